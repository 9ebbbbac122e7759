"""The public client library against the real server, through ``server.client`` only.

A TCP proxy between the library and the server cuts connections, swallows the
server's answers or points at a restarted server, so resume, idempotent resends
and backoff are seen end to end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from server.client import (
    Backoff,
    ClientError,
    CommandError,
    Connected,
    Reconnecting,
    Resumed,
    Status,
    connect,
)
from sessions import JSONObject
from tests.server.helpers import (
    ALICE,
    STEP,
    LiveServer,
    make_config,
    small_limits,
    start_server,
)

FAST = Backoff(first=0.01, longest=0.05, attempts=50)


class Proxy:
    """Forwards TCP to ``target`` (a port that may change); can cut every connection,
    or swallow what the server sends (its replies are then lost)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.muted = False
        self._scopes: set[trio.CancelScope] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    def cut(self) -> None:
        for scope in self._scopes:
            scope.cancel()

    async def _handle(self, client: trio.SocketStream) -> None:
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                async with client, await trio.open_tcp_stream("127.0.0.1", self.target) as up:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, client, up, False, nursery.cancel_scope)
                        nursery.start_soon(self._pump, up, client, True, nursery.cancel_scope)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the server is down: the client sees its connection closed
            finally:
                self._scopes.discard(scope)

    async def _pump(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        downstream: bool,
        done: trio.CancelScope,
    ) -> None:
        try:
            async for chunk in source:
                if not (downstream and self.muted):
                    await sink.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        done.cancel()


class Statuses:
    """The statuses a session reported; lets a test wait for one."""

    def __init__(self) -> None:
        self.seen: list[Status] = []
        self._changed = trio.Event()

    def __call__(self, status: Status) -> None:
        self.seen.append(status)
        self._changed.set()
        self._changed = trio.Event()

    async def until(self, kind: type[object], count: int = 1) -> None:
        with trio.fail_after(STEP):
            while sum(isinstance(s, kind) for s in self.seen) < count:
                await self._changed.wait()

    def of(self, kind: type[object]) -> list[Status]:
        return [s for s in self.seen if isinstance(s, kind)]


@pytest.fixture
async def server(nursery: trio.Nursery) -> LiveServer:
    return await start_server(nursery, make_config())


async def proxy_to(nursery: trio.Nursery, server: LiveServer) -> Proxy:
    port = int(server.url.rsplit(":", 1)[1])
    proxy = Proxy(port)
    await nursery.start(proxy.run)
    return proxy


async def log_of(server: LiveServer, session_id: str) -> list[JSONObject]:
    async with server.http() as http:
        response = await http.get(f"/v1/sessions/{session_id}/events", params={"limit": 1000})
    events: list[JSONObject] = response.json()["events"]
    return events


def seqs(events: list[JSONObject]) -> list[object]:
    return [event["seq"] for event in events]


@contextmanager
def bounded() -> Iterator[None]:
    with trio.fail_after(STEP):
        yield


async def test_events_across_a_cut_have_no_gap_or_duplicate(
    server: LiveServer, nursery: trio.Nursery, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("remember")
    proxy = await proxy_to(nursery, server)
    session_id = await server.new_session()
    statuses = Statuses()
    seen: list[JSONObject] = []
    with bounded():
        async with connect(proxy.url, ALICE, session_id, on_status=statuses, backoff=FAST) as s:
            ack = await s.send({"type": "user_message", "content": "read notes.txt"})
            assert ack.status == "accepted"
            async for event in s.events():
                seen.append(event)
                if event["type"] == "tool.call":
                    proxy.cut()  # mid-turn: the answer goes out on the next connection
                    arguments = event["arguments"]
                    assert isinstance(arguments, dict)
                    path = tmp_path / str(arguments["path"])
                    result = {"type": "tool_result", "call_id": event["call_id"]}
                    ack = await s.send(result | {"result": path.read_text()})
                    assert ack.status in ("accepted", "duplicate")
                if event["type"] == "turn.ended":
                    break
            assert s.last_seq == seen[-1]["seq"]
    assert seqs(seen) == list(range(1, len(seen) + 1))
    assert seqs(seen) == seqs(await log_of(server, session_id))
    assert seen[-1]["reason"] == "completed"
    assert statuses.of(Reconnecting) and statuses.of(Resumed)


async def test_a_command_whose_reply_was_lost_is_acked_duplicate(
    server: LiveServer, nursery: trio.Nursery
) -> None:
    proxy = await proxy_to(nursery, server)
    session_id = await server.new_session()
    statuses = Statuses()
    acks = []
    with bounded():
        async with (
            connect(server.url, ALICE, session_id) as watcher,
            connect(proxy.url, ALICE, session_id, on_status=statuses, backoff=FAST) as s,
        ):
            await statuses.until(Connected)  # the command goes out on a live connection
            async with trio.open_nursery() as inner:

                async def send() -> None:
                    acks.append(await s.send({"type": "user_message", "id": "m1", "content": "hi"}))

                proxy.muted = True  # the server applies the command; its ack is lost
                inner.start_soon(send)
                async for event in watcher.events():
                    if event["type"] == "user.message":
                        break
                proxy.muted = False
                proxy.cut()
    assert [(a.id, a.status) for a in acks] == [("m1", "duplicate")]
    assert acks[0].turn_id is not None
    assert statuses.of(Resumed)
    log = await log_of(server, session_id)
    assert [e["type"] for e in log].count("user.message") == 1


async def test_reconnects_with_backoff_while_the_server_is_down(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = make_config(db=str(tmp_path / "runtime.db"))
    statuses = Statuses()
    seen: list[JSONObject] = []
    with bounded():
        async with trio.open_nursery() as first:
            old = await start_server(first, config)
            proxy = await proxy_to(nursery, old)
            session_id = await old.new_session()
            async with connect(proxy.url, ALICE, session_id, on_status=statuses, backoff=FAST) as s:
                ack = await s.send({"type": "user_message", "content": "hello"})
                assert ack.status == "accepted"
                async for event in s.events():
                    seen.append(event)
                    if event["type"] == "turn.ended":
                        break
                old.shutdown.set()
                await statuses.until(Reconnecting, 3)  # down: several tries, further apart
                async with trio.open_nursery() as second:
                    new = await start_server(second, config)
                    proxy.target = int(new.url.rsplit(":", 1)[1])
                    ack = await s.send({"type": "user_message", "content": "hello again"})
                    assert ack.status == "accepted"
                    async for event in s.events():
                        seen.append(event)
                        if event["type"] == "turn.ended":
                            break
                    new.shutdown.set()
    delays = [status.delay for status in statuses.seen if isinstance(status, Reconnecting)]
    assert delays[:3] == sorted(delays[:3]) and delays[0] < delays[2]
    assert seqs(seen) == list(range(1, len(seen) + 1))
    assert [e["type"] for e in seen].count("turn.ended") == 2


async def test_an_error_frame_is_a_typed_error_and_the_connection_stays(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery, make_config(limits=small_limits(max_message_bytes=1024)))
    session_id = await server.new_session()
    with bounded():
        async with connect(server.url, ALICE, session_id) as s:
            with pytest.raises(CommandError) as info:
                await s.send({"type": "user_message", "content": "x" * 2000})
            assert info.value.code == "too_large"
            ack = await s.send({"type": "tool_result", "call_id": "nope", "result": 1})
            assert (ack.status, ack.code) == ("rejected", "unknown_call")


async def test_refusals_leave_the_session_as_client_errors(server: LiveServer) -> None:
    session_id = await server.new_session()
    with bounded():
        with pytest.raises(ClientError) as info:
            async with connect(server.url, "wrong", session_id) as s:
                await trio.sleep_forever()  # the failure cancels the body
        assert info.value.code == "unauthorized"
        with pytest.raises(ClientError) as info:
            async with connect(server.url, ALICE, "ses_nope") as s:
                async for _ in s.events():
                    pass
        assert info.value.code == "not_found"
        with pytest.raises(KeyError):  # the body's own errors leave as themselves
            async with connect(server.url, ALICE, session_id):
                raise KeyError("mine")
