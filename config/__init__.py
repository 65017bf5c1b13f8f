"""Example site files, device profiles and scenarios, shipped as package data
(`alarmgw.config`) so an installed gateway finds its built-in profiles."""
