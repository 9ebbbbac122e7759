"""Server-side Prometheus metrics, registered next to the runtime's in one registry."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import partial
from typing import Protocol, runtime_checkable

from prometheus_client import Counter, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
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
        """Export *store*'s health and write failures, read at each scrape.

        A store that several replicas share (PostgreSQL) also exports its leases
        and, once its fan-out keeps ``stats``, the notification lag.
        """
        self.runtime.registry.register(_StoreCollector(store))
        if store.replica is not None:
            self.runtime.registry.register(LeaseCollector(store))

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
        # Appends per batch is how much group commit saves: each batch is one
        # transaction (and, with durability "full", one fsync).
        yield CounterMetricFamily(
            "agent_runtime_store_batches",
            "Transactions the store's writer committed (each holds one or more appends)",
            value=stats.batches,
        )
        yield CounterMetricFamily(
            "agent_runtime_store_appends",
            "Appends the store's writer committed",
            value=stats.appends,
        )
        yield CounterMetricFamily(
            "agent_runtime_store_failed_batches",
            "Batches that failed for any reason (one bad append is retried alone)",
            value=stats.failed_batches,
        )


@runtime_checkable
class LeaseCounts(Protocol):
    """What a leasing backend (``sessions._postgres.PostgresBackend``) counts."""

    held: Mapping[str, int]  # session -> generation of each lease this replica holds
    lost: int  # leases found taken over: at a renewal, or by a refused (fenced) write
    fenced: int  # appends refused by the fence (another replica holds the lease)
    taken_over: int  # lapsed leases of other replicas that this one took over


def lease_counts(store: SessionStore) -> LeaseCounts | None:
    """The lease counters of *store*'s backend, or ``None`` for a one-writer store.

    ``GroupCommitStore`` keeps its backend private and has no public counters
    of it yet; this is the one place that looks inside (by duck typing, so
    psycopg is not imported here).
    """
    if store.replica is None:
        return None
    backend: object = getattr(store, "_backend", None)
    return backend if isinstance(backend, LeaseCounts) else None


def _fanout_stat(store: SessionStore, name: str) -> float | None:
    """A number of the store's fan-out ``stats`` (LISTEN/NOTIFY), if it keeps one."""
    stats: object = getattr(getattr(store, "_fanout", None), "stats", None)
    value: object = getattr(stats, name, None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class LeaseCollector(Collector):
    """Leases of a store several replicas share, and its fan-out's notification lag."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        replica = self._store.replica
        if replica is not None:
            info = GaugeMetricFamily(
                "agent_runtime_replica_info",
                "This replica's name in the leases table (host:pid:random), always 1",
                labels=["replica"],
            )
            info.add_metric([replica], 1)
            yield info
        counts = lease_counts(self._store)
        if counts is not None:
            yield GaugeMetricFamily(
                "agent_runtime_leases_held",
                "Sessions whose lease this replica holds (it is their only writer)",
                value=len(counts.held),
            )
            yield CounterMetricFamily(
                "agent_runtime_leases_lost",
                "Leases found taken over by another replica: at a renewal, or by a fenced"
                " write that was refused (nothing of it committed)",
                value=counts.lost,
            )
            yield CounterMetricFamily(
                "agent_runtime_fenced_writes",
                "Appends refused because another replica held the session's lease",
                value=counts.fenced,
            )
            yield CounterMetricFamily(
                "agent_runtime_lease_takeovers",
                "Lapsed leases of other replicas (stopped or dead) that this replica took over",
                value=counts.taken_over,
            )
        yield from self._fanout()

    def _fanout(self) -> Iterator[Metric]:
        """The fan-out's ``stats`` (LISTEN/NOTIFY), each metric only if it keeps that number."""
        stat = partial(_fanout_stat, self._store)
        for name, metric, doc in _FANOUT_COUNTERS:
            if (value := stat(name)) is not None:
                yield CounterMetricFamily(metric, doc, value=value)
        samples = stat("batches")
        if samples is None:
            samples = stat("notifications")
        lag_sum = stat("lag_sum")
        if samples is not None and lag_sum is not None:
            yield SummaryMetricFamily(
                "agent_runtime_notification_lag_seconds",
                "From a notification's arrival to its events reaching subscribers here",
                count_value=int(samples),
                sum_value=lag_sum,
            )
        if (lag_max := stat("lag_max")) is not None:
            yield GaugeMetricFamily(
                "agent_runtime_notification_lag_max_seconds",
                "Largest notification lag seen since this replica started",
                value=lag_max,
            )


_FANOUT_COUNTERS = (
    ("notifications", "agent_runtime_notifications", "Notifications received (own ones too)"),
    (
        "ignored",
        "agent_runtime_notifications_ignored",
        "Notifications of this replica's own commits, or of sessions nobody follows here",
    ),
    ("reads", "agent_runtime_notification_reads", "Storage reads made to feed subscribers"),
    ("drops", "agent_runtime_listen_drops", "Listening connections lost (then reopened)"),
)
