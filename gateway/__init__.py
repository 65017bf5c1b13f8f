"""The site gateway (`alarmgw.gateway`): the site core (`core`) on its store (`store`), and the
faces a site file asks for around it, built by the composition root (`app`): the uplink,
remote commands, the HTTP API and dashboard, metrics, InfluxDB, Home Assistant; and the
`alarmgw` command (`cli`). See docs/architecture.md."""
