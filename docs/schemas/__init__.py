"""The uplink payload schemas, shipped with the package (alarmgw.schemas) for the service centre."""
