"""alarmgw: the site gateway for wireless fire and burglar alarm systems.

This package holds what every area shares: the common model (`alarmgw.model`) and the
injectable clock (`alarmgw.clock`). Drivers, diagnostics, the gateway service and the
simulator live in the sibling packages `drivers`, `diagnostics`, `gateway`, `simulator`.
"""

__version__ = "0.1.0"
