"""The gateway service: site file, poll scheduler, ticket store, uplink, remote commands,
the `alarmgw` command. It wires `drivers` and `diagnostics` together for one site."""
