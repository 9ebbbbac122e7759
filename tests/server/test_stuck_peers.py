"""Peers that stop reading are cut after ``send_timeout``; everyone else is untouched.

The stuck clients are real sockets with a 4 KiB receive buffer that never read
after their request. A cut is a TCP reset, which their kernel reports as
``POLLHUP``/``POLLERR`` while the unread data is still queued: the tests wait for
that (in a thread, with a bound) instead of reading, which would unstick them.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from server import ConfigurationError, load_config
from server._tcp import BoundedWriter, WriteScopes
from tests.server.helpers import (
    ALICE,
    BOB,
    STEP,
    Frame,
    LiveServer,
    WsClient,
    ended,
    make_config,
    start_server,
)

SEND_TIMEOUT = 1.0
# Slack on top of send_timeout for scheduling and the turn's last commits.
CUT_SLACK = 2.0
# More than four times the default subscriber buffer in events, as in the report (the
# runner coalesces the words queued while a commit is in flight: ~5,000-9,000 events).
WORDS = 24_000


async def _connect(server: LiveServer) -> trio.socket.SocketType:
    url = httpx.URL(server.url)
    assert url.port is not None
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect((url.host, url.port))
    return sock


async def open_stuck_ws(server: LiveServer, session_id: str) -> trio.socket.SocketType:
    """A WebSocket client that completes the handshake, sends ``hello`` and never reads."""
    sock = await _connect(server)
    ws = WSConnection(ConnectionType.CLIENT)
    request = Request(
        host=httpx.URL(server.url).netloc.decode(),
        target=f"/v1/sessions/{session_id}/ws",
        extra_headers=[(b"authorization", f"Bearer {ALICE}".encode())],
    )
    await sock.send(ws.send(request))
    with trio.fail_after(STEP):
        accepted = False
        while not accepted:
            data = await sock.recv(4096)
            assert data, "closed during the handshake"
            ws.receive_data(data)
            accepted = any(isinstance(event, AcceptConnection) for event in ws.events())
    await sock.send(ws.send(TextMessage(json.dumps({"type": "hello"}))))
    return sock


async def open_stuck_sse(server: LiveServer, session_id: str) -> trio.socket.SocketType:
    """An SSE client that sends its request and never reads the response."""
    sock = await _connect(server)
    request = (
        f"GET /v1/sessions/{session_id}/events HTTP/1.1\r\n"
        f"Host: {httpx.URL(server.url).netloc.decode()}\r\n"
        f"Authorization: Bearer {ALICE}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    )
    await sock.send(request.encode())
    return sock


def _wait_hangup(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, 0)  # POLLHUP and POLLERR are always reported
    return bool(poller.poll(int(timeout * 1000)))


async def cut_time(sock: trio.socket.SocketType) -> float | None:
    """When the server reset *sock* (trio's clock), or ``None`` if not within ``STEP``."""
    if await trio.to_thread.run_sync(_wait_hangup, sock.fileno(), STEP):
        return trio.current_time()
    return None


async def metrics(server: LiveServer) -> dict[str, float]:
    async with server.http() as http:
        response = await http.get("/metrics")
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if not sample.labels
    }


async def test_stuck_consumers_are_cut_and_a_canary_is_untouched(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(send_timeout=SEND_TIMEOUT))
    session_id = await server.new_session()
    canary_session = await server.new_session(BOB)
    stuck = {
        "ws": await open_stuck_ws(server, session_id),
        "sse": await open_stuck_sse(server, session_id),
    }
    connected = trio.current_time()
    cuts: dict[str, float | None] = {}
    turns: dict[str, list[Frame]] = {}

    async def watch(name: str) -> None:
        cuts[name] = await cut_time(stuck[name])

    async def stream(name: str, client: WsClient, words: int) -> None:
        # Healthy clients read all the time: with this send_timeout, a pause of a
        # second would get them cut too.
        message = {"type": "user_message", "id": name, "content": f"stream {words} words"}
        assert (await client.command(message))["status"] == "accepted"
        turns[name] = await client.until(ended)

    try:
        async with (
            server.ws(session_id) as driver,
            server.ws(canary_session, BOB) as canary,
        ):
            async with trio.open_nursery() as watchers:
                for name in stuck:
                    watchers.start_soon(watch, name)
                async with trio.open_nursery() as streams:
                    streams.start_soon(stream, "driver", driver, WORDS)
                    streams.start_soon(stream, "canary", canary, WORDS // 3)
                turn_end = trio.current_time()
            # Every event, in order (WsClient checks seqs), and both turns completed.
            for events in turns.values():
                assert events[-1]["reason"] == "completed"
            assert len(turns["driver"]) > 4 * server.config.subscriber_buffer
            for name, cut in cuts.items():
                assert cut is not None, f"the stuck {name} client was never cut"
                assert cut - connected >= SEND_TIMEOUT, (name, cut - connected)
                assert cut - turn_end <= SEND_TIMEOUT + CUT_SLACK, (name, cut - turn_end)
            # The cut handlers have unwound once nothing is left to run.
            await trio.testing.wait_all_tasks_blocked()
            after = await metrics(server)
            assert after["agent_runtime_stalled_connections_total"] == 2
            assert after["agent_runtime_ws_connections"] == 2  # the driver and the canary
            assert after["agent_runtime_sse_streams"] == 0
    finally:
        for sock in stuck.values():
            sock.close()


# Unit tests of the bounded writer on a loopback TCP pair, on trio's mock clock.


@contextlib.contextmanager
def tcp_pair() -> Iterator[tuple[trio.SocketStream, trio.SocketStream]]:
    """(server side, client side) of a loopback TCP connection with small buffers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    with server, client:
        yield (
            trio.SocketStream(trio.socket.from_stdlib_socket(server)),
            trio.SocketStream(trio.socket.from_stdlib_socket(client)),
        )


@contextlib.contextmanager
def unix_pair() -> Iterator[tuple[trio.SocketStream, trio.SocketStream]]:
    """Like :func:`tcp_pair`, without TCP's real-time ACK timers (the mock clock ignores them)."""
    server, client = socket.socketpair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    with server, client:
        yield (
            trio.SocketStream(trio.socket.from_stdlib_socket(server)),
            trio.SocketStream(trio.socket.from_stdlib_socket(client)),
        )


class Stalls:
    def __init__(self) -> None:
        self.count = 0

    def inc(self) -> None:
        self.count += 1


def reset_seen(stream: trio.SocketStream) -> bool:
    return _wait_hangup(stream.socket.fileno(), STEP)


async def hang_up_after(stream: trio.SocketStream, seconds: float) -> None:
    await trio.sleep(seconds)  # mock clock
    await stream.aclose()


PAYLOAD = b"x" * (4 * 1024 * 1024)


async def test_a_write_the_peer_never_reads_is_reset_after_send_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with tcp_pair() as (server, client):
        stalls = Stalls()
        writer = BoundedWriter(server, send_timeout=30, scopes=WriteScopes(), on_stalled=stalls.inc)
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            # The write is shielded, so only a hang-up could end it if it never gave up.
            nursery.start_soon(hang_up_after, client, 60)
            assert not await writer.write(PAYLOAD)
            nursery.cancel_scope.cancel()
        # Filling the buffers takes no (mock) time; then nothing moves for 30 s.
        assert trio.current_time() - start == pytest.approx(30)
        assert stalls.count == 1
        assert reset_seen(client)
        # Later writes on the reset connection fail at once.
        assert not await writer.write(b"more")
        assert stalls.count == 1


async def test_a_slow_reader_is_never_cut_while_it_makes_progress(
    autojump_clock: trio.testing.MockClock,
) -> None:
    payload = PAYLOAD[: 1024 * 1024]
    with unix_pair() as (server, client):
        stalls = Stalls()
        writer = BoundedWriter(server, send_timeout=1, scopes=WriteScopes(), on_stalled=stalls.inc)
        received = 0

        async def read_slowly() -> None:
            nonlocal received
            while received < len(payload):
                await trio.sleep(0.6)  # advances the mock clock only
                received += len(await client.receive_some(64 * 1024))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_slowly)
            start = trio.current_time()
            with trio.fail_after(600):
                assert await writer.write(payload)
        # The write took many send_timeouts, but the peer took bytes at least every 0.6 s.
        assert trio.current_time() - start > 10
        assert stalls.count == 0
        assert received == len(payload)


async def test_the_shutdown_deadline_cuts_a_blocked_write(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with tcp_pair() as (server, client):
        stalls = Stalls()
        scopes = WriteScopes()
        writer = BoundedWriter(server, send_timeout=100, scopes=scopes, on_stalled=stalls.inc)
        async with trio.open_nursery() as nursery:

            async def write() -> None:
                with trio.fail_after(60):
                    assert not await writer.write(PAYLOAD)

            nursery.start_soon(write)
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            scopes.cut_at(start + 2)
        # Cut at the deadline, long before send_timeout, and not counted as a stall.
        assert trio.current_time() - start == pytest.approx(2)
        assert stalls.count == 0
        assert reset_seen(client)


async def test_a_write_the_kernel_takes_in_part_arrives_whole_and_in_order() -> None:
    # The first try writes what the kernel takes at once; the rest goes through
    # the bounded path. The bytes must join up exactly.
    payload = bytes(range(256)) * 4096
    with unix_pair() as (server, client):
        writer = BoundedWriter(
            server, send_timeout=30, scopes=WriteScopes(), on_stalled=Stalls().inc
        )
        received = bytearray()

        async def read_all() -> None:
            while len(received) < len(payload):
                received.extend(await client.receive_some(64 * 1024))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            with trio.fail_after(60):
                assert await writer.write(payload)
        assert bytes(received) == payload


async def test_after_the_shutdown_cut_no_write_starts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with tcp_pair() as (server, client):
        scopes = WriteScopes()
        writer = BoundedWriter(server, send_timeout=100, scopes=scopes, on_stalled=Stalls().inc)
        assert await writer.write(b"before")
        scopes.cut_at(trio.current_time())
        assert not await writer.write(b"after")
        assert await client.receive_some(64) == b"before"
        assert reset_seen(client)


def test_send_timeout_is_configurable(tmp_path: Path) -> None:
    assert load_config().send_timeout == 30.0
    config_file = tmp_path / "agent.toml"
    config_file.write_text("[server]\nsend_timeout = 12.5\n")
    assert load_config(config_file=config_file).send_timeout == 12.5
    env = {"AGENT_RUNTIME_SEND_TIMEOUT": "4"}
    assert load_config(env=env, config_file=config_file).send_timeout == 4.0
    for bad in ("0", "-1", "soon"):
        with pytest.raises(ConfigurationError, match="AGENT_RUNTIME_SEND_TIMEOUT"):
            load_config(env={"AGENT_RUNTIME_SEND_TIMEOUT": bad})
