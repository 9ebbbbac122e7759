"""KeepAliveTransport: the provider's O(1) connection pool, against real sockets."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import h11
import httpx
import pytest
import trio
import trio.testing
import trustme

from agents._providers._http_pool import (
    KEEPALIVE_EXPIRY,
    KeepAliveTransport,
    TransportClosed,
    pooled_transport,
)
from tests.fakes.openai_server import HangUp, open_fake_openai, stream_text

BODY = b'{"model": "m", "messages": []}'


def post(url: str) -> httpx.Request:
    return httpx.Request(
        "POST",
        url + "/chat/completions",
        content=BODY,
        extensions={"timeout": {"connect": 5.0, "read": None, "write": 5.0, "pool": None}},
    )


async def read_all(response: httpx.Response) -> bytes:
    body = b"".join([part async for part in response.aiter_raw()])
    await response.aclose()
    return body


async def test_a_finished_response_returns_its_connection_for_the_next_request() -> None:
    async with open_fake_openai([stream_text("a") for _ in range(3)]) as fake:
        transport = KeepAliveTransport(max_connections=4, max_keepalive=4)
        for _ in range(3):
            response = await transport.handle_async_request(post(fake.base_url))
            assert response.status_code == 200
            assert b"[DONE]" in await read_all(response)
        assert fake.connections == 1
        assert transport.idle_connections == 1
        await transport.aclose()
        assert transport.idle_connections == 0


async def test_at_most_max_connections_are_open_and_the_others_wait() -> None:
    async with open_fake_openai([stream_text("a") for _ in range(3)]) as fake:
        transport = KeepAliveTransport(max_connections=2, max_keepalive=2)
        first = await transport.handle_async_request(post(fake.base_url))
        second = await transport.handle_async_request(post(fake.base_url))
        third: list[httpx.Response] = []

        async def wait_for_a_connection() -> None:
            third.append(await transport.handle_async_request(post(fake.base_url)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_a_connection)
            await trio.testing.wait_all_tasks_blocked()
            assert not third  # both connections are in use
            await read_all(first)  # read to its end: the connection is reusable
        await read_all(second)
        await read_all(third[0])
        assert fake.connections == 2
        await transport.aclose()


async def test_idle_connections_beyond_max_keepalive_are_closed() -> None:
    async with open_fake_openai([stream_text("a") for _ in range(3)]) as fake:
        transport = KeepAliveTransport(max_connections=3, max_keepalive=1)
        responses = [await transport.handle_async_request(post(fake.base_url)) for _ in range(3)]
        for response in responses:
            await read_all(response)
        assert fake.connections == 3
        assert transport.idle_connections == 1
        await transport.aclose()


async def test_a_response_left_unread_closes_its_connection() -> None:
    async with open_fake_openai([stream_text(*["w"] * 50) for _ in range(2)]) as fake:
        transport = KeepAliveTransport(max_connections=1, max_keepalive=1)
        for _ in range(2):
            response = await transport.handle_async_request(post(fake.base_url))
            await response.aclose()  # the body is not read to its end
        assert fake.connections == 2
        assert transport.idle_connections == 0
        await transport.aclose()


@asynccontextmanager
async def one_response_per_connection() -> AsyncIterator[tuple[str, list[trio.Event]]]:
    """A server that answers one request per connection and then closes it, without
    saying so (no ``Connection: close``): the client keeps a connection that is gone."""
    closed: list[trio.Event] = []

    async def handle(stream: trio.SocketStream) -> None:
        done = trio.Event()
        closed.append(done)
        conn = h11.Connection(h11.SERVER)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.EndOfMessage):
                break
        body = b"data: [DONE]\n\n"
        headers = [("content-length", str(len(body)))]
        await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers)))
        await stream.send_all(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        await stream.aclose()
        done.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield f"http://127.0.0.1:{port}/v1", closed
        nursery.cancel_scope.cancel()


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async with one_response_per_connection() as (url, closed):
        transport = KeepAliveTransport(max_connections=1, max_keepalive=1)
        await read_all(await transport.handle_async_request(post(url)))
        await closed[0].wait()
        assert transport.idle_connections == 1  # kept: nothing said it would close
        # The stale one is noticed when taken, closed, and a new one is opened.
        assert await read_all(await transport.handle_async_request(post(url))) == (
            b"data: [DONE]\n\n"
        )
        assert len(closed) == 2
        await transport.aclose()


async def test_a_cancelled_request_frees_its_slot() -> None:
    async def never_answer(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, never_answer, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        silent = f"http://127.0.0.1:{port}/v1"
        async with open_fake_openai([stream_text("a")]) as fake:
            transport = KeepAliveTransport(max_connections=1, max_keepalive=1)
            with trio.CancelScope() as scope:
                nursery.start_soon(_cancel_when_blocked, scope)
                await transport.handle_async_request(post(silent))
            assert scope.cancelled_caught
            # The only slot is free again.
            with trio.fail_after(5):
                assert b"[DONE]" in await read_all(
                    await transport.handle_async_request(post(fake.base_url))
                )
            await transport.aclose()
        nursery.cancel_scope.cancel()


async def _cancel_when_blocked(scope: trio.CancelScope) -> None:
    await trio.testing.wait_all_tasks_blocked()
    scope.cancel()


async def test_failures_are_httpx_errors() -> None:
    transport = KeepAliveTransport(max_connections=1, max_keepalive=1)
    with trio.socket.socket() as unused:
        await unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        await transport.handle_async_request(post(f"http://127.0.0.1:{port}/v1"))
    async with open_fake_openai([HangUp()]) as fake:
        with pytest.raises(httpx.RemoteProtocolError):
            await transport.handle_async_request(post(fake.base_url))
    with pytest.raises(httpx.UnsupportedProtocol):
        await transport.handle_async_request(httpx.Request("GET", "ftp://example.invalid/"))
    await transport.aclose()
    with pytest.raises(TransportClosed):
        await transport.handle_async_request(post("http://127.0.0.1:1/v1"))


async def test_a_request_waiting_for_a_slot_when_the_transport_closes_is_refused() -> None:
    async with open_fake_openai([stream_text("a") for _ in range(2)]) as fake:
        transport = KeepAliveTransport(max_connections=1, max_keepalive=1)
        first = await transport.handle_async_request(post(fake.base_url))
        refused: list[BaseException] = []

        async def wait_for_the_slot() -> None:
            with pytest.raises(TransportClosed) as caught:
                await transport.handle_async_request(post(fake.base_url))
            refused.append(caught.value)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_the_slot)
            await trio.testing.wait_all_tasks_blocked()
            await transport.aclose()
            await read_all(first)  # frees the slot: the waiter must not use it
        assert refused
        assert fake.connections == 1
        assert transport.idle_connections == 0


async def test_connections_idle_too_long_are_closed_though_never_taken(
    mock_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_openai([stream_text("a") for _ in range(5)]) as fake:
        transport = KeepAliveTransport(max_connections=3, max_keepalive=3)
        # Three connections, idle since t = 0 (the last released on top).
        responses = [await transport.handle_async_request(post(fake.base_url)) for _ in range(3)]
        for response in responses:
            await read_all(response)
        assert transport.idle_connections == 3
        # The top one is used again at t = 3; the two below it are not.
        mock_clock.jump(KEEPALIVE_EXPIRY * 0.6)
        await read_all(await transport.handle_async_request(post(fake.base_url)))
        mock_clock.jump(KEEPALIVE_EXPIRY * 0.6)
        # Past the expiry for the two below, not for the top: they are closed.
        await read_all(await transport.handle_async_request(post(fake.base_url)))
        assert transport.idle_connections == 1
        assert fake.connections == 3
        await transport.aclose()


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        KeepAliveTransport(max_connections=0, max_keepalive=1)
    with pytest.raises(ValueError, match="max_keepalive"):
        KeepAliveTransport(max_connections=1, max_keepalive=-1)


def test_a_proxied_url_goes_through_httpx_own_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    url = httpx.URL("https://api.example.com/v1/chat/completions")
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(pooled_transport(url, max_connections=2, max_keepalive=2), KeepAliveTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    proxied = pooled_transport(url, max_connections=2, max_keepalive=2)
    assert isinstance(proxied, httpx.AsyncHTTPTransport)
    monkeypatch.setenv("NO_PROXY", "api.example.com")
    assert isinstance(pooled_transport(url, max_connections=2, max_keepalive=2), KeepAliveTransport)


@asynccontextmanager
async def tls_server(ca: trustme.CA, answers: list[int]) -> AsyncIterator[str]:
    """An HTTPS server on 127.0.0.1 (certificate for ``localhost``) answering
    ``[DONE]`` to every request on a kept-alive connection; counts connections."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        answers.append(0)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    conn.receive_data(bytes(data))
                elif isinstance(event, h11.EndOfMessage):
                    body = b"data: [DONE]\n\n"
                    head = h11.Response(
                        status_code=200, headers=[("content-length", str(len(body)))]
                    )
                    await stream.send_all(
                        conn.send(head)
                        + conn.send(h11.Data(data=body))
                        + conn.send(h11.EndOfMessage())
                    )
                    answers[-1] += 1
                    conn.start_next_cycle()
        except (trio.BrokenResourceError, ssl.SSLError):
            return

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_ssl_over_tcp, handle, 0, context, host="127.0.0.1")
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]
        yield f"https://localhost:{port}/v1"
        nursery.cancel_scope.cancel()


async def test_https_connections_are_verified_and_kept_alive(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = trustme.CA()
    answers: list[int] = []
    async with tls_server(ca, answers) as url:
        # Not trusted yet: the handshake fails as a connect error.
        untrusting = KeepAliveTransport(max_connections=1, max_keepalive=1)
        with pytest.raises(httpx.ConnectError):
            await untrusting.handle_async_request(post(url))
        await untrusting.aclose()
        # Trusted through SSL_CERT_FILE, as httpx's own transport does.
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        transport = KeepAliveTransport(max_connections=1, max_keepalive=1)
        for _ in range(2):
            assert await read_all(await transport.handle_async_request(post(url))) == (
                b"data: [DONE]\n\n"
            )
        # The certificate names localhost, not 127.0.0.1: refused.
        with pytest.raises(httpx.ConnectError):
            await transport.handle_async_request(post(url.replace("localhost", "127.0.0.1")))
        await transport.aclose()
    assert answers[1] == 2  # both requests on one TLS connection


async def test_a_kept_alive_connection_dropped_as_a_request_arrives_is_resent_once() -> None:
    # uvicorn (vLLM) closes a connection idle for 5 s; a request sent on it just
    # then fails with no response. It goes again on a new connection, at once.
    async with open_fake_openai([stream_text("a"), HangUp(), stream_text("b")]) as fake:
        transport = KeepAliveTransport(max_connections=1, max_keepalive=1)
        assert b'"a"' in await read_all(await transport.handle_async_request(post(fake.base_url)))
        assert transport.idle_connections == 1
        assert b'"b"' in await read_all(await transport.handle_async_request(post(fake.base_url)))
        assert len(fake.requests) == 3
        assert [r.raw for r in fake.requests] == [BODY] * 3  # the body went again, whole
        assert fake.connections == 2
        await transport.aclose()


async def test_a_new_connection_that_fails_is_not_resent() -> None:
    async with open_fake_openai([HangUp(), stream_text("unused")]) as fake:
        transport = KeepAliveTransport(max_connections=1, max_keepalive=1)
        with pytest.raises(httpx.RemoteProtocolError):
            await transport.handle_async_request(post(fake.base_url))
        assert len(fake.requests) == 1
        await transport.aclose()


async def test_a_kept_alive_connection_is_not_resent_on_once_its_response_began() -> None:
    # The server answered (a byte of a status line is an answer): it processed the
    # request, and a second one is the caller's decision, not the pool's.
    requests: list[int] = []

    async def begin_then_close_the_second(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.EndOfMessage):
                requests.append(1)
                if len(requests) > 1:
                    await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-ty")
                    await stream.aclose()
                    return
                body = b"data: [DONE]\n\n"
                head = h11.Response(status_code=200, headers=[("content-length", str(len(body)))])
                await stream.send_all(
                    conn.send(head) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
                )
                conn.start_next_cycle()

    async with trio.open_nursery() as nursery:
        serve = partial(trio.serve_tcp, begin_then_close_the_second, 0, host="127.0.0.1")
        listeners = await nursery.start(serve)
        url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/v1"
        transport = KeepAliveTransport(max_connections=1, max_keepalive=1)
        await read_all(await transport.handle_async_request(post(url)))
        with pytest.raises(httpx.RemoteProtocolError):
            await transport.handle_async_request(post(url))
        assert len(requests) == 2
        await transport.aclose()
        nursery.cancel_scope.cancel()


async def test_a_body_that_cannot_be_sent_twice_is_not_resent() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield BODY

    async with open_fake_openai([stream_text("a"), HangUp(), stream_text("unused")]) as fake:
        transport = KeepAliveTransport(max_connections=1, max_keepalive=1)
        await read_all(await transport.handle_async_request(post(fake.base_url)))
        streamed = httpx.Request("POST", fake.base_url + "/chat/completions", content=body())
        with pytest.raises(httpx.RemoteProtocolError):
            await transport.handle_async_request(streamed)
        assert len(fake.requests) == 2
        await transport.aclose()
