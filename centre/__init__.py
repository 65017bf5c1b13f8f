"""The service centre: every site's uplink on one desk, on PostgreSQL and a broker with
shared subscriptions. It shares the model, the ticket lifecycle, the clocks and the payload
schemas with the gateway, and never imports `alarmgw.gateway`."""
