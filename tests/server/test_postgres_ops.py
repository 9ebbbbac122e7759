"""Operating on PostgreSQL: `/health` reports the database and the leases, `/metrics` too.

A database that goes away is played by a TCP proxy between the server and
PostgreSQL that the test can cut (only this test's connections are touched).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import cast
from urllib.parse import urlsplit, urlunsplit

import attrs
import psycopg
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from agents import RuntimeMetrics
from server._metrics import LeaseCollector, ServerMetrics
from sessions import (
    Append,
    LeaseLost,
    NewEvent,
    Session,
    SessionStore,
    now,
    open_postgres_store,
)

from ..pg import fresh_schema
from .helpers import STEP, LiveServer, drive_turn, make_config, start_server


def _samples(text: str) -> dict[str, float]:
    """``name{labels}`` → value of a Prometheus text page (labels as written)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


async def _metrics(server: LiveServer) -> dict[str, float]:
    async with server.http() as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    return _samples(response.text)


async def _turn(server: LiveServer, session_id: str) -> None:
    async with server.ws(session_id) as client:
        ack = await client.command({"type": "user_message", "id": "m1", "content": "read a.txt"})
        assert ack["status"] == "accepted", ack
        with trio.fail_after(STEP):
            assert (await drive_turn(client))[-1]["reason"] == "completed"


async def test_health_and_metrics_on_postgres_show_the_database_and_the_leases() -> None:
    with fresh_schema() as dsn:
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, make_config(db=dsn))
            async with server.http(None) as anonymous:
                health = await anonymous.get("/health")
            assert health.status_code == 200
            body = health.json()
            replica = body.pop("replica")
            assert isinstance(replica, str) and replica
            assert body == {
                "status": "ok",
                "store": {"ok": True},
                "database": "ok",
                "leases_held": 0,
            }
            metrics = await _metrics(server)
            assert metrics[f'agent_runtime_replica_info{{replica="{replica}"}}'] == 1
            assert metrics["agent_runtime_leases_held"] == 0
            assert metrics["agent_runtime_leases_lost_total"] == 0

            session_id = await server.new_session(agent="coder")
            await _turn(server, session_id)
            async with server.http(None) as anonymous:
                body = (await anonymous.get("/health")).json()
            held = body["leases_held"]
            assert body["database"] == "ok" and held >= 1  # the session's (until it goes idle)
            assert (await _metrics(server))["agent_runtime_leases_held"] == held
            server.shutdown.set()


@pytest.mark.parametrize("db", [":memory:", "sessions.db"])
async def test_health_on_sqlite_and_memory_says_nothing_of_a_database(
    tmp_path: Path, db: str
) -> None:
    config = make_config(db=db if db == ":memory:" else str(tmp_path / db))
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, config)
        async with server.http(None) as anonymous:
            health = await anonymous.get("/health")
        assert (health.status_code, health.json()) == (200, {"status": "ok", "store": {"ok": True}})
        assert not any("lease" in name or "replica" in name for name in await _metrics(server))
        server.shutdown.set()


@attrs.define(eq=False)
class _Proxy:
    """A TCP proxy to PostgreSQL that can refuse and cut its connections, like an outage."""

    upstream: tuple[str, int]
    port: int = 0
    refusing: bool = False
    # The local port of each live upstream connection: the server backend's client_port.
    ports: set[int] = attrs.field(factory=set)
    _cuts: set[trio.CancelScope] = attrs.field(factory=set)

    def dsn(self, dsn: str) -> str:
        parts = urlsplit(dsn)
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}"))

    def go_away(self) -> None:
        """Cut every connection and refuse new ones."""
        self.refusing = True
        for scope in self._cuts:
            scope.cancel()

    def come_back(self) -> None:
        self.refusing = False

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            if self.refusing:
                return
            with trio.CancelScope() as cut:
                self._cuts.add(cut)
                try:
                    async with await trio.open_tcp_stream(*self.upstream) as server:
                        port = server.socket.getsockname()[1]
                        self.ports.add(port)
                        try:
                            async with trio.open_nursery() as nursery:
                                nursery.start_soon(self._pump, client, server, nursery.cancel_scope)
                                nursery.start_soon(self._pump, server, client, nursery.cancel_scope)
                        finally:
                            self.ports.discard(port)
                finally:
                    self._cuts.discard(cut)

    @staticmethod
    async def _pump(
        source: trio.SocketStream, sink: trio.SocketStream, done: trio.CancelScope
    ) -> None:
        try:
            async for chunk in source:
                await sink.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        done.cancel()


@asynccontextmanager
async def _proxy_to(dsn: str) -> AsyncIterator[_Proxy]:
    parts = urlsplit(dsn)
    assert parts.hostname is not None
    proxy = _Proxy((parts.hostname, parts.port or 5432))
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        yield proxy
        nursery.cancel_scope.cancel()


async def test_health_is_503_degraded_while_the_database_is_away() -> None:
    with fresh_schema() as dsn:
        async with _proxy_to(dsn) as proxy, trio.open_nursery() as nursery:
            server = await start_server(nursery, make_config(db=proxy.dsn(dsn)))
            await server.new_session(agent="coder")
            async with server.http(None) as anonymous:
                assert (await anonymous.get("/health")).json()["database"] == "ok"

                # An administrator terminates the server's connections: they are
                # replaced, and the database is fine.
                with psycopg.connect(dsn, autocommit=True) as admin:
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE client_addr = '127.0.0.1' AND client_port = ANY(%s)",
                        (sorted(proxy.ports),),
                    )
                health = await anonymous.get("/health")
                assert (health.status_code, health.json()["database"]) == (200, "ok")

                proxy.go_away()
                for _ in range(2):  # the same answer while it stays away
                    health = await anonymous.get("/health")
                    assert health.status_code == 503
                    assert health.headers["Retry-After"] == "5"
                    body = health.json()
                    assert body["status"] == "degraded" and body["database"] == "unavailable"
                    assert "the database is unavailable" in body["database_error"]
                    assert isinstance(body["replica"], str) and body["leases_held"] == 1
                # The rest of the server still answers (what needs no database).
                assert (await _metrics(server))["agent_runtime_leases_held"] == 1

                proxy.come_back()
                health = await anonymous.get("/health")
                assert (health.status_code, health.json()["status"]) == (200, "ok")
            server.shutdown.set()


async def test_a_lease_lost_to_another_replica_is_counted() -> None:
    with fresh_schema() as dsn:
        async with open_postgres_store(dsn) as store:
            metrics = ServerMetrics(RuntimeMetrics())
            metrics.watch_store(store)
            t = now()
            session = Session("ses_lost", "alice", "lost", t, t, "coder")
            await store.append(Append(session.id, session=session))
            assert _samples(metrics.render().decode())["agent_runtime_leases_held"] == 1
            # Another replica takes the session over (its lease's next generation).
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute(
                    "UPDATE leases SET owner = 'another', generation = generation + 1"
                    " WHERE session_id = %s",
                    (session.id,),
                )
            with pytest.raises(LeaseLost):
                await store.append(Append(session.id, events=(NewEvent("note"),)))
            page = _samples(metrics.render().decode())
            assert page["agent_runtime_leases_held"] == 0
            assert page["agent_runtime_leases_lost_total"] == 1


def test_the_fanouts_notification_stats_are_exported_when_it_keeps_them() -> None:
    stats = SimpleNamespace(
        notifications=7, ignored=2, reads=5, batches=4, lag_sum=0.5, lag_max=0.25, drops=1
    )
    store = SimpleNamespace(
        replica="host:1:ab",
        _backend=SimpleNamespace(held={"s": 1}, lost=3, fenced=2, taken_over=1),
        _fanout=SimpleNamespace(stats=stats),
    )
    page = {
        sample.name: sample.value
        for family in LeaseCollector(cast(SessionStore, store)).collect()
        for sample in family.samples
    }
    assert page == {
        "agent_runtime_replica_info": 1,
        "agent_runtime_leases_held": 1,
        "agent_runtime_leases_lost_total": 3,
        "agent_runtime_fenced_writes_total": 2,
        "agent_runtime_lease_takeovers_total": 1,
        "agent_runtime_notifications_total": 7,
        "agent_runtime_notifications_ignored_total": 2,
        "agent_runtime_notification_reads_total": 5,
        "agent_runtime_listen_drops_total": 1,
        "agent_runtime_notification_lag_seconds_count": 4,
        "agent_runtime_notification_lag_seconds_sum": 0.5,
        "agent_runtime_notification_lag_max_seconds": 0.25,
    }
    # Before the fan-out keeps stats: the lease metrics only.
    leases = SimpleNamespace(held={}, lost=0, fenced=0, taken_over=0)
    bare = SimpleNamespace(replica="r", _backend=leases)
    names = {f.name for f in LeaseCollector(cast(SessionStore, bare)).collect()}
    assert names == {
        "agent_runtime_replica_info",
        "agent_runtime_leases_held",
        "agent_runtime_leases_lost",
        "agent_runtime_fenced_writes",
        "agent_runtime_lease_takeovers",
    }
