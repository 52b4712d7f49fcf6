"""The hub's metrics endpoint: Prometheus text on a loopback address, off the receive hot path.

prometheus-client serves `GET /metrics` from its own thread. What it shows is read when it is scraped:

- every counter set the agents keep (`Counters`), one family per set, named after it
  (`msexchange_sender_id_agent_total{counter="Messages Validated"}`), the Exchange name in its help text;
- each agent's hook calls, errors and time in its hooks (`transport_agent_calls_total`,
  `transport_agent_errors_total`, `transport_agent_seconds_total`);
- the queues' lengths, read from the queue database with a connection of the scrape's own
  (`transport_queue_length{queue="Submission"}`);
- messages received, recipients delivered and failed, and the receive → delivery latency histogram, counted from
  the tracking log's rows as they are written (a listener: a lock and an add per row);
- the process's memory, CPU and open files (prometheus-client's process collector).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

from queues.admin import open_admin
from queues.store import SUBMISSION

from .core.clock import Clock, real_time
from .core.config import MetricsSettings, parse_binding
from .core.counters import Counters
from .core.errors import AdminError, StoreError, TransportError
from .core.pipeline import Pipeline
from .core.tracking import TrackingEvent

if TYPE_CHECKING:
    from pathlib import Path
    from wsgiref.simple_server import WSGIServer

__all__ = ["MetricsEndpoint", "metric_name"]

log = logging.getLogger("transport.metrics")

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


def metric_name(counter_set: str) -> str:
    """`MSExchange Sender Id Agent` → `msexchange_sender_id_agent`."""
    return re.sub(r"[^a-z0-9]+", "_", counter_set.lower()).strip("_") or "counters"


class _HubCollector(Collector):
    """What is read at scrape time (agents' counters and calls, queue lengths)."""

    def __init__(self, counters: Counters, pipeline: Pipeline, queue_db: "Path") -> None:
        self.counters = counters
        self.pipeline = pipeline
        self.queue_db = queue_db

    def collect(self) -> Iterator[Metric]:
        for counter_set, values in self.counters.snapshot().items():
            family = CounterMetricFamily(metric_name(counter_set), f"Performance counters of {counter_set}",
                                         labels=["counter"])
            for name, value in values.items():
                family.add_metric([name], value)
            yield family
        calls = CounterMetricFamily("transport_agent_calls", "Hook calls per agent", labels=["agent"])
        errors = CounterMetricFamily("transport_agent_errors", "Exceptions raised by each agent's hooks", labels=["agent"])
        seconds = CounterMetricFamily("transport_agent_seconds", "Time on the event loop in each agent's hooks "
                                      "(their own steps, not their waits)", labels=["agent"])
        for la in self.pipeline.agents:
            calls.add_metric([la.name], la.calls)
            errors.add_metric([la.name], la.errors)
            seconds.add_metric([la.name], la.time_ns / 1e9)
        yield calls
        yield errors
        yield seconds
        lengths = GaugeMetricFamily("transport_queue_length", "Messages in each queue (Get-Queue MessageCount)",
                                    labels=["queue"])
        try:
            with open_admin(self.queue_db) as tables:
                summaries = tables.queue_summaries()
        except (AdminError, StoreError, OSError) as e:
            log.warning("metrics: cannot read the queue database: %s", e)
            summaries = {}
        for queue in [SUBMISSION] + sorted(q for q in summaries if q != SUBMISSION):
            lengths.add_metric([queue], summaries.get(queue, (0,))[0])
        yield lengths


class MetricsEndpoint:
    """Built by the hub; `listen` starts the HTTP thread, `record` is the tracking log listener."""

    def __init__(self, settings: MetricsSettings, counters: Counters, pipeline: Pipeline, queue_db: "Path",
                 clock: Clock = real_time) -> None:
        self.settings = settings
        self.clock = clock  # the hub's, which stamped each message's arrival
        self.registry = CollectorRegistry()
        self.received = Counter("transport_messages_received", "Messages received and committed to the queue",
                                registry=self.registry)
        self.delivered = Counter("transport_messages_delivered", "Recipients' copies delivered to a mailbox or handed to a next hop",
                                 registry=self.registry)
        self.failed = Counter("transport_messages_failed", "Recipients failed for good (NDR)", registry=self.registry)
        self.latency = Histogram("transport_delivery_latency_seconds", "From receipt to delivery (or hand-off to a next hop), per recipient's copy",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_HubCollector(counters, pipeline, queue_db))
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, process_cpu_seconds_total, …
        self._server: "WSGIServer | None" = None

    def record(self, event: TrackingEvent, recipients: list[str], received_at: float) -> None:
        if event is TrackingEvent.RECEIVE:
            self.received.inc()
        elif event is TrackingEvent.DELIVER or event is TrackingEvent.SEND:
            self.delivered.inc(len(recipients))
            waited = max(0.0, self.clock() - received_at)
            for _ in recipients:  # a SEND row may carry several recipients
                self.latency.observe(waited)
        elif event is TrackingEvent.FAIL:
            self.failed.inc(len(recipients))

    def listen(self) -> tuple[str, int]:
        """Serve /metrics on the binding; returns (host, port) (port 0 picks a free one)."""
        host, port = parse_binding(self.settings.binding)
        try:
            self._server, _ = start_http_server(port, host, registry=self.registry)
        except OSError as e:
            raise TransportError(f"metrics.binding: cannot listen on {self.settings.binding}: {e.strerror or e}") from None
        return host, self._server.server_port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
