"""Open tickets of every site as the desk's incident lines (`incidents.group_incidents`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from alarmgw.clock import iso
from alarmgw.diagnostics.tickets import TicketState

from .incidents import IncidentRules, TicketSummary, group_incidents

MAX_LISTED = 1000  # tickets listed with one incident; `tickets_total` says how many it has


def incidents_of(
    rows: Sequence[tuple[str, str, str | None, str, datetime, str]], rules: IncidentRules
) -> dict[str, object]:
    """Incidents among (site, ref, area, fault, opened_at, state) rows, and how many tickets
    stayed single. A ticket's place in `rows` stands in for its id, since a gateway's and
    the centre's tickets are numbered apart."""
    summaries = [
        TicketSummary(site, i, area or "", fault, opened_at, TicketState(state))
        for i, (site, _ref, area, fault, opened_at, state) in enumerate(rows)
        if state in TicketState.__members__.values()
    ]
    grouping = group_incidents(summaries, rules)
    return {
        "incidents": [
            {
                "id": inc.id,
                "line": inc.describe(),
                "fault": inc.fault,
                "area": inc.area,
                "sites": inc.sites,
                "still_open": inc.still_open,
                "first_opened": iso(inc.first_opened),
                "last_opened": iso(inc.last_opened),
                "tickets_total": len(inc.tickets),
                "tickets": [{"site": site, "ref": rows[i][1]} for site, i in inc.tickets[:MAX_LISTED]],
            }
            for inc in grouping.incidents
        ],
        "singles": len(grouping.singles),
    }
