"""alarmgw: the site gateway for wireless fire and burglar alarm systems.

One import package. What every area shares lives here: the common model (`alarmgw.model`),
the injectable clock (`alarmgw.clock`), task ownership (`alarmgw.tasks`) and YAML loading
(`alarmgw.yamlfile`). The areas of the design card are its subpackages, kept as folders at
the top of the repository: `alarmgw.drivers`, `alarmgw.diagnostics`, `alarmgw.gateway`,
`alarmgw.simulator`, and the packaged examples and profiles in `alarmgw.config`.
"""

__version__ = "0.1.0"
