"""The live terminal view (rich): devices, active faults, open tickets and their clocks."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from alarmgw.diagnostics.sla import CLOCK_NAMES, ClockState, ClockStatus
from alarmgw.diagnostics.tickets import Ticket
from alarmgw.model import DeviceKind

from .tables import fit_table
from .view import SiteView


def fmt_span(seconds: float) -> str:
    """-1h02m, 59m10s, 2d03h: compact and signed."""
    sign = "-" if seconds < 0 else ""
    s = int(abs(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{sign}{d}d{h:02d}h"
    if h:
        return f"{sign}{h}h{m:02d}m"
    return f"{sign}{m}m{s:02d}s"


def clock_text(c: ClockStatus) -> Text:
    if c.state is ClockState.NOT_NEEDED:
        return Text("not needed", style="dim")
    if c.state is ClockState.MET:
        return Text("met", style="green")
    if c.state is ClockState.BREACHED:
        return Text(f"BREACHED {fmt_span(c.remaining_s)}", style="bold red")
    style = "yellow" if c.remaining_s < 900 else ""
    return Text(fmt_span(c.remaining_s) + ("~" if c.provisional else ""), style=style)


def tickets_table(tickets: list[Ticket], now: datetime) -> Table:
    t = Table(title="Open tickets", expand=True)
    # The downtime column only when some ticket's device went away during its repair.
    names = [n for n in CLOCK_NAMES if n != "downtime" or any(tk.down_since for tk in tickets)]
    for col in ("#", "device", "fault", "state", "opened (UTC)", *names, "notes"):
        t.add_column(col)
    for tk in tickets:
        clocks = {c.name: clock_text(c) for c in tk.clocks(now)}
        notes = []
        if not tk.fault_active:
            notes.append("restored")
        if tk.affected:
            notes.append(f"{len(tk.affected)} behind it, {len(tk.casualties)} seen lost")
        if tk.occurrences > 1:
            notes.append(f"x{tk.occurrences}")
        if tk.out_of_service:
            notes.append("out of service")
        t.add_row(
            str(tk.id),
            tk.device_id,
            tk.fault,
            tk.state.value,
            tk.opened_at.strftime("%H:%M:%S"),
            *(clocks.get(name, Text("-", style="dim")) for name in names),
            ", ".join(notes),
        )
    return t


def render(gw: SiteView, console: Console) -> Group:
    """The site's devices and open tickets, fitted to `console`'s width, nothing cut."""
    now = gw.clock.now()
    devices = Table(title=f"Site {gw.site.config.site.id}: devices", expand=True)
    for col in ("device", "kind", "via", "battery", "RSSI", "heard", "faults"):
        devices.add_column(col)
    active = gw.active_faults()
    for d in gw.devices.values():
        r = gw.latest.get(d.id)
        v = r.values if r else {}
        batt = f"{v['battery_v']:.2f} V" if "battery_v" in v else "-"
        rssi = f"{v['rssi_dbm']} dBm" if "rssi_dbm" in v else "-"
        if d.kind is DeviceKind.HOST:
            heard = "LINK LOST" if v.get("link_lost") else ("ok" if r else "-")
        else:
            heard = f"{v['link_age_s']:.0f} s ago" if "link_age_s" in v else "-"
        faults = ", ".join(sorted(active.get(d.id, [])))
        devices.add_row(
            d.id, d.kind.value, d.parent or "", batt, rssi, heard, Text(faults, style="bold red" if faults else "")
        )
    tickets = tickets_table(gw.store.tickets.all(include_closed=False), now)
    fit_table(devices, console)
    fit_table(tickets, console)
    readings = gw.stats()["readings"]
    footer = Text(f"{now:%Y-%m-%d %H:%M:%S} UTC  readings: {readings}  store: {gw.store.path}", style="dim")
    return Group(devices, tickets, footer)
