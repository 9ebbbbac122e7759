"""Server-side Prometheus metrics, registered next to the runtime's in one registry."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agents import RuntimeMetrics, Supervisor
from sessions import SessionStore


class ServerMetrics:
    """Connections, streams and refused requests, exported with ``GET /metrics``."""

    def __init__(self, runtime: RuntimeMetrics) -> None:
        self.runtime = runtime
        registry = runtime.registry
        self.ws_connections = Gauge(
            "agent_runtime_ws_connections", "Open WebSocket connections", registry=registry
        )
        self.sse_streams = Gauge(
            "agent_runtime_sse_streams", "Open server-sent event streams", registry=registry
        )
        self.events_sent = Counter(
            "agent_runtime_events_sent",
            "Durable events written to clients",
            ["transport"],
            registry=registry,
        )
        self.commands = Counter(
            "agent_runtime_commands",
            "Client commands by acknowledgement status",
            ["transport", "status"],
            registry=registry,
        )
        self.client_errors = Counter(
            "agent_runtime_client_errors",
            "Requests or frames refused, by error code",
            ["code"],
            registry=registry,
        )
        self.slow_consumers = Counter(
            "agent_runtime_slow_consumers",
            "Subscribers disconnected because they fell behind",
            ["transport"],
            registry=registry,
        )
        self.stalled_connections = Counter(
            "agent_runtime_stalled_connections",
            "Connections reset because the peer accepted no data for send_timeout",
            registry=registry,
        )
        self.internal_errors = Counter(
            "agent_runtime_internal_errors",
            "Unexpected exceptions turned into 500 responses",
            registry=registry,
        )

    def watch_sessions(self, supervisor: Supervisor) -> None:
        """Export how many sessions are live in memory, and how many were evicted."""
        self.runtime.registry.register(_SessionsCollector(supervisor))

    def watch_store(self, store: SessionStore) -> None:
        """Export *store*'s health and write failures, read at each scrape."""
        self.runtime.registry.register(_StoreCollector(store))

    def render(self) -> bytes:
        return self.runtime.render()


class _SessionsCollector(Collector):
    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        sessions = self._supervisor.sessions
        yield GaugeMetricFamily(
            "agent_runtime_live_sessions",
            "Sessions whose state is loaded in memory (idle ones are evicted)",
            value=len(sessions),
        )
        yield CounterMetricFamily(
            "agent_runtime_session_evictions",
            "Idle sessions dropped from memory (reloaded from the store on demand)",
            value=sessions.evictions,
        )


class _StoreCollector(Collector):
    def __init__(self, store: SessionStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        health, stats = self._store.health, self._store.stats
        yield GaugeMetricFamily(
            "agent_runtime_store_degraded",
            "1 while the session store cannot write (disk full, I/O error), else 0",
            value=0 if health.ok else 1,
        )
        yield CounterMetricFamily(
            "agent_runtime_store_storage_failures",
            "Batches the storage refused (disk full, I/O error); nothing of them was written",
            value=stats.storage_failures,
        )
        yield CounterMetricFamily(
            "agent_runtime_store_failed_batches",
            "Batches that failed for any reason (one bad append is retried alone)",
            value=stats.failed_batches,
        )
