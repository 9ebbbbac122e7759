"""Several ``agent-runtime serve`` processes on one PostgreSQL database (SPEC §9).

Each replica is a real process (``--db postgresql://...``). A session is run by
the replica holding its lease; another replica refuses its commands cleanly
until that lease lapses, then takes the session over and recovers it from the
log. A lapse is made happen in the database (never by sleeping): it is what a
frozen or dead replica's lease does after its TTL.

The fencing test is the one langgraph #8796 asks for: freeze the owner
(SIGSTOP), let another replica take over and continue, resume the frozen one
(SIGCONT): its own writes are refused (it steps down and forwards to the new
holder), and the log has no fork, no duplicate seq, no gap, and one
``turn.ended`` per turn.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import psycopg
import pytest
import trio

from tests.server.helpers import STEP, Frame, LiveServer
from tests.server.test_ws import expect_close

from ..pg import fresh_schema
from .test_process import TOKEN, running_server, server_env

pytestmark = pytest.mark.slow


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_schema() as value:
        yield value


@asynccontextmanager
async def replicas(
    dsn: str, tmp_path: Path, count: int, *, lease_ttl: float = 30.0
) -> AsyncIterator[list[tuple[trio.Process, LiveServer]]]:
    """*count* replicas on *dsn*. The long default TTL: lapses are made, not waited for."""
    async with AsyncExitStack() as stack:
        started = []
        for n in range(count):
            log = tmp_path / f"replica-{n}.log"
            env = server_env(AGENT_RUNTIME_LEASE_TTL=f"{lease_ttl:g}")
            started.append(
                await stack.enter_async_context(running_server(dsn, log, "--pace", "0", env=env))
            )
        yield started


def lapse(dsn: str, session_id: str) -> None:
    """The session's lease runs out, as a frozen or dead holder's does after its TTL."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE leases SET expires_at = 0 WHERE session_id = %s", (session_id,))


def lease_owner(dsn: str, session_id: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT owner FROM leases WHERE session_id = %s", (session_id,)
        ).fetchone()
    assert row is not None
    return str(row[0])


def log_of(dsn: str, session_id: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT seq, type FROM events WHERE session_id = %s ORDER BY seq", (session_id,)
        ).fetchall()
    return [(int(seq), str(type_)) for seq, type_ in rows]


def assert_one_history(log: list[tuple[int, str]]) -> None:
    seqs = [seq for seq, _ in log]
    assert seqs == list(range(1, len(log) + 1)), "a gap or a duplicate seq"
    types = [type_ for _, type_ in log]
    assert types.count("turn.started") == types.count("turn.ended")


def message(command_id: str, content: str) -> Frame:
    return {"type": "user_message", "id": command_id, "content": content}


async def test_a_command_sent_to_another_replica_has_the_owners_contract(
    dsn: str, tmp_path: Path
) -> None:
    async with replicas(dsn, tmp_path, 2) as [(_, a), (_, b)]:
        session_id = await a.new_session(TOKEN, agent="coder")
        async with a.ws(session_id, TOKEN) as on_a:
            ack = await on_a.command(message("m1", "hello"))
            assert ack["status"] == "accepted"
            with trio.fail_after(STEP):
                await on_a.until_type("turn.ended")
            seen = on_a.last_seq
        # B forwards the command to A, which runs the session: the same ack,
        # given once its effect is committed, and the turn runs on A.
        async with b.ws(session_id, TOKEN, after=seen) as on_b:
            forwarded = await on_b.command(message("m2", "hello from b"))
            assert forwarded["status"] == "accepted" and forwarded["turn_id"]
            with trio.fail_after(STEP):
                events = await on_b.until_type("turn.ended")  # live, from A's commits
            assert events[0]["type"] == "user.message" and events[-1]["reason"] == "completed"
            again = await on_b.command(message("m2", "hello from b"))
        assert again["status"] == "duplicate" and again["turn_id"] == forwarded["turn_id"]
        async with a.ws(session_id, TOKEN, after=on_b.last_seq) as on_a:
            on_owner = await on_a.command(message("m2", "hello from b"))
        assert on_owner["status"] == "duplicate" and on_owner["turn_id"] == forwarded["turn_id"]
        # Any replica serves reads, and a read never takes the session (even one
        # whose lease lapsed, as an idle session's does).
        lapse(dsn, session_id)
        async with b.http(TOKEN) as http:
            shown = (await http.get(f"/v1/sessions/{session_id}/messages")).json()
            assert (await http.get(f"/v1/sessions/{session_id}")).status_code == 200
        assert [m["role"] for m in shown["messages"]].count("user") == 2
        async with a.http(TOKEN) as http:
            owner_a = (await http.get("/health")).json()["replica"]
        assert lease_owner(dsn, session_id) == owner_a
        log = log_of(dsn, session_id)
        assert_one_history(log)
        assert [t for _, t in log].count("user.message") == 2


async def test_every_replica_shows_the_turn_another_replica_is_running(
    dsn: str, tmp_path: Path
) -> None:
    async with replicas(dsn, tmp_path, 2) as [(_, a), (_, b)]:
        session_id = await a.new_session(TOKEN, agent="coder")
        idle_id = await b.new_session(TOKEN, agent="coder")
        async with a.ws(session_id, TOKEN) as on_a:
            ack = await on_a.command(message("m1", "read a.txt"))
            with trio.fail_after(STEP):
                call = (await on_a.until_type("tool.call"))[-1]  # A runs it: waiting
            turn_id = ack["turn_id"]

            async def shown_by_b() -> tuple[object, dict[str, object]]:
                async with b.http(TOKEN) as http:
                    one = (await http.get(f"/v1/sessions/{session_id}")).json()
                    page = (await http.get("/v1/sessions")).json()["sessions"]
                return one["running_turn"], {s["id"]: s["running_turn"] for s in page}

            single, listed = await shown_by_b()
            assert single == turn_id
            assert listed == {session_id: turn_id, idle_id: None}
            async with b.ws(session_id, TOKEN, after=on_a.last_seq) as on_b:
                assert (await on_b.synced())["session"]["running_turn"] == turn_id
            result = {"type": "tool_result", "id": "r1", "call_id": call["call_id"]}
            assert (await on_a.command(result | {"result": "a"}))["status"] == "accepted"
            with trio.fail_after(STEP):
                await on_a.until_type("turn.ended")
        single, listed = await shown_by_b()
        assert single is None and listed == {session_id: None, idle_id: None}


async def test_a_frozen_owner_is_fenced_off_after_another_replica_takes_over(
    dsn: str, tmp_path: Path
) -> None:
    async with replicas(dsn, tmp_path, 2) as [(process_a, a), (_, b)]:
        session_id = await a.new_session(TOKEN, agent="coder")
        async with a.ws(session_id, TOKEN) as on_a:
            assert (await on_a.command(message("m1", "read a.txt")))["status"] == "accepted"
            with trio.fail_after(STEP):
                call = (await on_a.until_type("tool.call"))[-1]
            seen_on_a = on_a.last_seq
        process_a.send_signal(signal.SIGSTOP)  # frozen: its lease stops being renewed
        try:
            lapse(dsn, session_id)
            # The IDE answers through B: B takes the session over, recovers the
            # turn waiting for this result, and finishes it.
            async with b.ws(session_id, TOKEN, after=seen_on_a) as on_b:
                result = {
                    "type": "tool_result",
                    "id": "r1",
                    "call_id": call["call_id"],
                    "result": "contents of a.txt",
                }
                assert (await on_b.command(result))["status"] == "accepted"
                with trio.fail_after(STEP):
                    done = (await on_b.until_type("turn.ended"))[-1]
                assert done["reason"] == "completed"
        finally:
            process_a.send_signal(signal.SIGCONT)
        before = log_of(dsn, session_id)
        # A wakes up believing it runs the session. Its own write is refused
        # (fenced); it steps down and forwards the command to B, which decides.
        async with a.ws(session_id, TOKEN, after=len(before)) as on_a:
            again = await on_a.command(dict(result, id="r2"))  # the call was answered
            assert again["status"] == "rejected" and again["code"] == "already_resolved"
            late = await on_a.command(message("m2", "from the frozen replica"))
            assert late["status"] == "accepted"
            with trio.fail_after(STEP):
                await on_a.until_type("turn.ended")
        after = log_of(dsn, session_id)
        assert after[: len(before)] == before
        assert_one_history(after)
        types = [type_ for _, type_ in after]
        assert types.count("tool.result") == 1 and types.count("turn.ended") == 2


async def test_a_dead_replicas_streaming_turn_is_recovered_by_another(
    dsn: str, tmp_path: Path
) -> None:
    # A short TTL: the surviving replica finds the orphan on its own, within a
    # TTL or two of the owner's death, with no client command to trigger it.
    async with replicas(dsn, tmp_path, 2, lease_ttl=1.0) as [(process_a, a), (_, b)]:
        session_id = await a.new_session(TOKEN, agent="coder")
        seen: list[Frame] = []
        async with a.ws(session_id, TOKEN) as on_a:
            command = message("m1", "stream 40 words then hold g")
            assert (await on_a.command(command))["status"] == "accepted"
            with trio.fail_after(STEP):
                seen += await on_a.until(
                    lambda e: e["type"] == "text.delta" and "alpha" in str(e.get("text"))
                )
            process_a.kill()  # mid-stream
            await process_a.wait()
        # A client of the other replica, resuming from what it saw, just waits.
        async with b.ws(session_id, TOKEN, after=seen[-1]["seq"]) as on_b:
            with trio.fail_after(STEP):
                first = (await on_b.until_type("turn.ended"))[-1]
            assert first["reason"] == "interrupted"
            assert (await on_b.command(message("m2", "hello again")))["status"] == "accepted"
            with trio.fail_after(STEP):
                second = (await on_b.until_type("turn.ended"))[-1]
        assert second["reason"] == "completed"
        log = log_of(dsn, session_id)
        assert_one_history(log)
        # Every event the client saw on the dead replica is in the log.
        assert [(e["seq"], e["type"]) for e in seen] == log[: len(seen)]


def wait_for_forwarding(dsn: str, ready: threading.Event) -> str:
    """Block until a replica forwards a command (the inbox's NOTIFY); its session id."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        channel = conn.execute("SELECT 'agent_runtime_inbox_' || md5(current_schema())").fetchone()
        assert channel is not None
        conn.execute(f"LISTEN {channel[0]}")
        ready.set()
        for notification in conn.notifies(timeout=STEP, stop_after=1):
            return notification.payload
    raise AssertionError("no command was forwarded")


async def test_a_command_forwarded_to_a_frozen_owner_is_applied_once_its_lease_lapses(
    dsn: str, tmp_path: Path
) -> None:
    async with replicas(dsn, tmp_path, 2) as [(process_a, a), (_, b)]:
        session_id = await a.new_session(TOKEN, agent="coder")
        async with a.ws(session_id, TOKEN) as on_a:
            assert (await on_a.command(message("m1", "hello")))["status"] == "accepted"
            with trio.fail_after(STEP):
                await on_a.until_type("turn.ended")
            seen = on_a.last_seq
        process_a.send_signal(signal.SIGSTOP)  # alive but frozen: it answers nothing
        try:
            ready = threading.Event()
            async with trio.open_nursery() as nursery, b.ws(session_id, TOKEN, after=seen) as on_b:
                forwarded = trio.Event()

                async def watch() -> None:
                    assert await trio.to_thread.run_sync(wait_for_forwarding, dsn, ready) == (
                        session_id
                    )
                    forwarded.set()

                nursery.start_soon(watch)
                await trio.to_thread.run_sync(ready.wait)
                await on_b.send(message("m2", "while the owner is frozen"))
                with trio.fail_after(STEP):
                    await forwarded.wait()  # B is waiting for A's answer now
                lapse(dsn, session_id)  # A's lease runs out: B takes over
                with trio.fail_after(STEP):
                    ack = await on_b.ack("m2")
                    assert ack["status"] == "accepted"
                    done = (await on_b.until_type("turn.ended"))[-1]
                assert done["reason"] == "completed"
        finally:
            process_a.send_signal(signal.SIGCONT)
        log = log_of(dsn, session_id)
        assert_one_history(log)
        assert [t for _, t in log].count("user.message") == 2


async def test_resuming_across_three_replicas_during_a_live_stream_has_no_gap_or_duplicate(
    dsn: str, tmp_path: Path
) -> None:
    async with replicas(dsn, tmp_path, 3) as started:
        servers = [server for _, server in started]
        session_id = await servers[0].new_session(TOKEN, agent="coder")
        got: list[Frame] = []
        reconnects = 0
        async with servers[0].ws(session_id, TOKEN) as first:
            assert (await first.command(message("m1", "slow stream 25 words")))[
                "status"
            ] == "accepted"
            got.append(await first.event())
        # The turn streams on replica 0; the client hops replica to replica,
        # resuming each time from the last seq it saw, until the turn ends.
        while got[-1]["type"] != "turn.ended":
            server = servers[(reconnects + 1) % 3]
            reconnects += 1
            async with server.ws(session_id, TOKEN, after=got[-1]["seq"]) as client:
                client.last_seq = got[-1]["seq"]
                for _ in range(1):
                    with trio.fail_after(STEP):
                        got.append(await client.event())  # asserts contiguous seqs
                    if got[-1]["type"] == "turn.ended":
                        break
        assert reconnects >= 20, (reconnects, len(got))
        log = log_of(dsn, session_id)
        assert [(e["seq"], e["type"]) for e in got] == log
        assert_one_history(log)


async def test_session_changes_through_another_replica_are_applied_by_the_one_running_it(
    dsn: str, tmp_path: Path
) -> None:
    """A renames, sets instructions and deletes through B while A runs the session
    (holds its lease): B forwards each to A. The deletion's ``session.deleted``
    reaches the WebSockets open on A and on B, which then close 4404."""
    async with replicas(dsn, tmp_path, 2) as [(_, a), (_, b)]:
        session_id = await a.new_session(TOKEN, agent="coder")
        async with a.ws(session_id, TOKEN) as on_a, b.ws(session_id, TOKEN) as on_b:
            assert (await on_a.command(message("m1", "hello")))["status"] == "accepted"
            with trio.fail_after(STEP):
                await on_a.until_type("turn.ended")
                await on_b.until_type("turn.ended")  # B follows A's commits live
            owner = lease_owner(dsn, session_id)
            async with b.http(TOKEN) as http:
                path = f"/v1/sessions/{session_id}"
                renamed = await http.patch(path, json={"title": "renamed on b"})
                assert renamed.status_code == 200, renamed.text
                assert renamed.json()["title"] == "renamed on b"
                hello: Frame = {"type": "hello", "after": 0, "instructions": "Use tabs."}
                async with b.ws(session_id, TOKEN, hello=hello, via_header=True) as with_rules:
                    await with_rules.command({"type": "cancel", "id": "c"})  # past the sync
                    assert with_rules.sync is not None
                    assert with_rules.sync["session"]["instructions"] == "Use tabs."
                assert (await http.delete(path)).status_code == 204
            assert lease_owner(dsn, session_id) == owner  # A applied all three
            for client in (on_a, on_b):
                with trio.fail_after(STEP):
                    assert (await client.event())["type"] == "session.deleted"
                assert await expect_close(client) == 4404
        async with a.http(TOKEN) as http:
            assert (await http.get(f"/v1/sessions/{session_id}")).status_code == 404
        log = log_of(dsn, session_id)
        assert_one_history(log)
        assert log[-1][1] == "session.deleted"
