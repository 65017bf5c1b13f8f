"""Prometheus metrics of one gateway, served by the HTTP API at /metrics.

Counters the gateway keeps anyway (polls, link requests, outbox depth, ...) are read when
Prometheus scrapes, so nothing is counted twice; only the latency histograms are fed as
things happen. Each gateway has its own registry: two gateways in one process (tests, the
demo) never share series.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alarmgw import __version__

from .changes import Change, TicketEvent
from .scheduler import PollJob
from .view import SiteView

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# From first observation of a fault to its ticket: debounce (tens of seconds) plus the poll.
TICKET_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class Restartable(Protocol):
    name: str
    restarts: int


class InfluxCounts(Protocol):
    written: int
    dropped: int
    failures: int

    def __len__(self) -> int: ...


class GatewayMetrics:
    def __init__(
        self,
        view: SiteView,
        tasks: Sequence[Restartable] = (),
        influx: InfluxCounts | None = None,
        published: Callable[[], int] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.poll_seconds = Histogram(
            "alarmgw_poll_duration_seconds",
            "Time one poll job took (all of its requests), by job",
            ["job"],
            buckets=POLL_BUCKETS,
            registry=self.registry,
        )
        self.ticket_delay = Histogram(
            "alarmgw_ticket_open_delay_seconds",
            "Time from the first observation of a fault to its ticket being written (debounce included)",
            buckets=TICKET_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Snapshot(view, tasks, influx, published))
        # Each job's histogram child, bound once: no label lookup on the poll path.
        self._poll_child: dict[PollJob, Any] = {}

    def on_change(self, change: Change) -> None:
        """Listens to the site's changes: the delay from detection to each new ticket."""
        if isinstance(change, TicketEvent) and change.action == "opened":
            self.ticket_opened(change.ticket.opened_at, change.at)

    def poll_done(self, job: PollJob, seconds: float) -> None:
        child = self._poll_child.get(job)
        if child is None:
            child = self._poll_child[job] = self.poll_seconds.labels(job.name)
        child.observe(seconds)

    def ticket_opened(self, opened_at: datetime, now: datetime) -> None:
        self.ticket_delay.observe(max(0.0, (now - opened_at).total_seconds()))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Snapshot(Collector):
    """The gateway's own counters and gauges, read at scrape time."""

    def __init__(
        self,
        view: SiteView,
        tasks: Sequence[Restartable],
        influx: InfluxCounts | None,
        published: Callable[[], int] | None,
    ) -> None:
        self.view = view
        self.tasks = tasks
        self.influx = influx
        self.published = published

    def describe(self) -> Iterator[Metric]:
        return iter(())  # series depend on the site; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        gw = self.view
        stats = gw.stats()
        info = GaugeMetricFamily("alarmgw_info", "The gateway and its site", labels=["site", "version"])
        info.add_metric([gw.site.config.site.id, __version__], 1)
        yield info

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=value)

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        yield counter("alarmgw_readings", "Readings taken in from every driver", stats["readings"])
        yield counter("alarmgw_mqtt_messages", "MQTT device messages received", stats["mqtt_messages"])
        yield counter("alarmgw_mqtt_malformed", "MQTT device messages refused as malformed", stats["mqtt_malformed"])
        yield counter("alarmgw_record_failures", "Fault changes the store could not take", stats["record_failures"])
        published = self.published() if self.published is not None else 0
        yield counter("alarmgw_uplink_published", "Uplink messages the broker acknowledged", published)
        yield gauge("alarmgw_outbox_depth", "Uplink messages waiting in the outbox", stats["outbox_depth"])
        yield counter(
            "alarmgw_outbox_evicted", "Telemetry messages given up to keep the outbox bound", stats["outbox_evicted"]
        )
        yield gauge(
            "alarmgw_outbox_overflowing",
            "1 while the outbox is over its bound with only fault and ticket events left (nothing is given up)",
            stats["outbox_overflowing"],
        )
        yield gauge("alarmgw_unrecorded_changes", "Fault changes waiting for the store", stats["unrecorded"])

        yield from _per(
            "job",
            [(j.name, j) for j in gw.jobs],
            [
                (CounterMetricFamily, "alarmgw_polls", "Runs of each poll job", lambda j: j.runs),
                (CounterMetricFamily, "alarmgw_poll_errors", "Runs of each poll job that failed", lambda j: j.errors),
                (CounterMetricFamily, "alarmgw_polls_skipped", "Ticks skipped as a run was late", lambda j: j.skipped),
            ],
        )
        yield from _per(
            "task",
            [(t.name, t) for t in self.tasks],
            [(CounterMetricFamily, "alarmgw_task_restarts", "Long-running tasks started again", lambda t: t.restarts)],
        )
        yield from _per(
            "link",
            [(link.name, link) for link in gw.links],
            [
                (CounterMetricFamily, "alarmgw_link_requests", "Requests sent on each link", lambda k: k.requests),
                (CounterMetricFamily, "alarmgw_link_failures", "Requests with no good answer", lambda k: k.failures),
                (
                    CounterMetricFamily,
                    "alarmgw_link_refusals",
                    "Requests the device answered with a protocol exception",
                    lambda k: k.refusals,
                ),
                (GaugeMetricFamily, "alarmgw_link_connected", "1 while the link is open", lambda k: int(k.connected)),
            ],
        )

        faults = GaugeMetricFamily("alarmgw_active_faults", "Faults raised and not cleared, by fault", labels=["fault"])
        for fault, n in sorted(Counter(f for fs in gw.active_faults().values() for f in fs).items()):
            faults.add_metric([fault], n)
        yield faults

        now = gw.clock.now()
        by_state: Counter[tuple[str, str]] = Counter()
        open_tickets = gw.store.tickets.all(include_closed=False)
        for t in open_tickets:
            for c in t.clocks(now):
                by_state[(c.name, c.state.value)] += 1
        clocks = GaugeMetricFamily(
            "alarmgw_open_ticket_clocks", "Service clocks of open tickets by clock and state", labels=["clock", "state"]
        )
        for (clock, state), n in sorted(by_state.items()):
            clocks.add_metric([clock, state], n)
        yield clocks
        yield gauge("alarmgw_open_tickets", "Tickets not closed", len(open_tickets))

        influx = self.influx
        if influx is not None:
            yield counter("alarmgw_influx_points_written", "Points InfluxDB accepted", influx.written)
            yield counter("alarmgw_influx_points_dropped", "Points given up: buffer full or refused", influx.dropped)
            yield counter("alarmgw_influx_write_failures", "Writes that failed and will be retried", influx.failures)
            yield gauge("alarmgw_influx_points_buffered", "Points waiting for InfluxDB", len(influx))


def _per(
    label: str,
    objects: list[tuple[str, Any]],
    families: list[tuple[type[CounterMetricFamily] | type[GaugeMetricFamily], str, str, Callable[[Any], float]]],
) -> Iterator[Metric]:
    """One family per (type, name, help, value of an object), a sample per named object."""
    for family_type, name, doc, value in families:
        family = family_type(name, doc, labels=[label])
        for obj_name, obj in objects:
            family.add_metric([obj_name], value(obj))
        yield family
