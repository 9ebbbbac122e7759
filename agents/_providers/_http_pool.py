"""An httpx transport whose connection pool costs the same with 1 or 1,000 connections.

httpcore's ``AsyncConnectionPool`` re-examines every connection for every queued
request each time a request starts or ends (``_assign_requests_to_connections``),
and checks each idle one with a poll syscall. With the model called by a hundred
turns at once that is most of a call's CPU (docs/benchmarks.md, "the HTTP path"):
measured on loopback at 100 concurrent streams, ~3 ms of CPU per request through
httpx's default transport, against ~0.5 ms for one stream at a time.

:class:`KeepAliveTransport` keeps, per origin, a last-in-first-out list of idle
HTTP/1.1 connections (httpcore's ``AsyncHTTPConnection``: the protocol work stays
httpcore's and h11's; the sockets are ``_http_backend.py``'s) and a semaphore of
``max_connections``. A request takes the most recently used idle connection
(checking only that one has not expired or been closed by the server), or opens a
new one; when its response is closed, the connection goes back to the list if it
is reusable and the list has room for it, and is closed otherwise. Every operation
is O(1).

A server may close an idle connection just as a request is sent on it (uvicorn,
and so vLLM, closes idle ones after 5 s): the request then fails with no byte of
a response. Such a request is sent once more, at once, on a new connection (HTTP
clients such as Go's do so for idempotent requests; why a POST is resent here:
:meth:`KeepAliveTransport.handle_async_request`), so the caller sees one request.

Errors are httpx's (mapped from httpcore's as httpx's own transport maps them), so
the provider's retry policy sees the same exceptions; a request after
:meth:`~KeepAliveTransport.aclose` fails with :class:`TransportClosed`, which is
not retried. No HTTP/2 and no proxies:
:func:`pooled_transport` returns httpx's own transport when the environment names
a proxy for the URL, so ``HTTPS_PROXY`` / ``NO_PROXY`` keep working.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Iterator

import httpcore
import httpx
import trio

from ._http_backend import TrioNetworkBackend, TrioSocketStream

# Most specific first: the first match names the httpx error.
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)

KEEPALIVE_EXPIRY = 4.0
"""Seconds an idle connection is kept: below the 5 s after which uvicorn (so vLLM)
and Node close theirs, so a connection is rarely taken just as its server drops
it (httpx keeps them 5 s). Servers with shorter limits (gunicorn's 2 s) are
covered by the resend of a request that a stale connection failed."""

_Idle = tuple[httpcore.AsyncHTTPConnection, float, TrioSocketStream | None]
"""An idle connection, the trio time it became idle, and its socket (to count reads)."""

_Origin = tuple[bytes, bytes, int]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc)) from exc
        raise


def environment_proxy(url: httpx.URL) -> str | None:
    """The proxy the environment (``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY``)
    names for *url*, as httpx's client would pick it; ``None`` if none."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(url.host):
        return None
    # "proxy.corp:3128" is a common way to write it; httpx reads it as http://.
    return proxy if "://" in proxy else f"http://{proxy}"


def pooled_transport(
    url: httpx.URL, *, max_connections: int, max_keepalive: int
) -> httpx.AsyncBaseTransport:
    """The transport for calls to *url*: :class:`KeepAliveTransport`, or httpx's
    own through the proxy when the environment names one for *url*."""
    proxy = environment_proxy(url)
    if proxy is not None:
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_keepalive
        )
        return httpx.AsyncHTTPTransport(proxy=proxy, limits=limits, trust_env=True)
    # Made now for an https URL, so that a bad SSL_CERT_FILE fails at start-up
    # (as with httpx's own transport), not every call.
    context = create_ssl_context() if url.scheme == "https" else None
    return KeepAliveTransport(
        max_connections=max_connections, max_keepalive=max_keepalive, ssl_context=context
    )


def create_ssl_context() -> ssl.SSLContext:
    """httpx's verified defaults: certifi's bundle, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``."""
    return httpx.create_ssl_context(trust_env=True)


class TransportClosed(httpx.HTTPError):
    """A request after :meth:`KeepAliveTransport.aclose` (final: not worth a retry)."""


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with kept-alive connections, at most ``max_connections`` at once.

    Requests beyond ``max_connections`` wait for a connection to be released
    (bounded by the caller's deadline, as with ``pool=None`` in httpx). At most
    ``max_keepalive`` idle connections are kept per origin, each for up to
    :data:`KEEPALIVE_EXPIRY` seconds: the most recently used is taken first, and
    those idle too long are closed from the other end (so none lingers
    half-closed), both without looking at the others.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        max_keepalive: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1 or max_keepalive < 0:
            raise ValueError("max_connections must be at least 1 and max_keepalive not negative")
        self._slots = trio.Semaphore(max_connections)
        self._max_keepalive = max_keepalive
        # Per origin, oldest first.
        self._idle: dict[_Origin, deque[_Idle]] = {}
        self._ssl = ssl_context
        self._network = TrioNetworkBackend()
        self._closed = False

    @property
    def idle_connections(self) -> int:
        """Connections kept open for reuse (all origins)."""
        return sum(len(idle) for idle in self._idle.values())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send *request* on a kept-alive or new connection.

        When a kept-alive connection fails (closed or reset) before any byte of the
        response came, *request* is sent once more on a new connection, if its body
        can be sent again (bytes or :class:`RequestParts`, not a one-off stream).
        The server may have read it (a POST), but a server that closes an idle
        connection does so when it has no request to answer, and the caller would
        send it again on this error anyway, only later and counted as a failed
        attempt.

        Cancellation: a cancelled request closes its connection and frees its slot.
        """
        if self._closed:
            raise TransportClosed("the transport is closed")
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        origin: _Origin = (url.raw_scheme, url.raw_host, url.port or _default_port(url.scheme))
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            await self._slots.acquire()
        connection: httpcore.AsyncHTTPConnection | None = None
        try:
            if self._closed:  # closed while this request waited for a slot
                raise TransportClosed("the transport is closed")
            connection, socket = await self._checkout(origin)
            received = 0 if socket is None else socket.received
            try:
                with _as_httpx_errors():
                    response = await connection.handle_async_request(core)
            except (httpx.NetworkError, httpx.RemoteProtocolError):
                stale = socket is not None and socket.received == received
                if not stale or not isinstance(request.stream, _REPLAYABLE):
                    raise
                logger.debug("a kept-alive connection to %s was gone; resending", url.host)
                closing, connection = connection, None
                with trio.CancelScope(shield=True):
                    await closing.aclose()
                connection = self._connect(origin)
                with _as_httpx_errors():
                    response = await connection.handle_async_request(core)
        except BaseException:
            if connection is not None:
                with trio.CancelScope(shield=True):
                    await connection.aclose()
            self._slots.release()
            raise
        stream = _ResponseStream(self, origin, connection, response)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=stream,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their response does."""
        self._closed = True
        idle = [c for connections in self._idle.values() for c, _, _ in connections]
        self._idle.clear()
        for connection in idle:
            await connection.aclose()

    async def _checkout(
        self, origin: _Origin
    ) -> tuple[httpcore.AsyncHTTPConnection, TrioSocketStream | None]:
        """A connection for *origin*, and its socket if it was used before (else ``None``)."""
        idle = self._idle.get(origin)
        if idle:
            await self._close_expired(idle)
        while idle:
            connection, _, socket = idle.pop()
            # Only this one is checked: has the server closed it, or has it idled too long?
            if connection.is_idle() and not connection.has_expired():
                return connection, socket
            await connection.aclose()
        return self._connect(origin), None

    def _connect(self, origin: _Origin) -> httpcore.AsyncHTTPConnection:
        """A new connection (it connects when its first request is sent)."""
        if origin[0] == b"https" and self._ssl is None:
            try:
                self._ssl = create_ssl_context()
            except (OSError, ssl.SSLError) as exc:
                raise httpx.ConnectError(f"cannot set up TLS: {exc}") from exc
        return httpcore.AsyncHTTPConnection(
            origin=httpcore.Origin(*origin),
            ssl_context=self._ssl if origin[0] == b"https" else None,
            keepalive_expiry=KEEPALIVE_EXPIRY,
            network_backend=self._network,
        )

    async def _close_expired(self, idle: deque[_Idle]) -> None:
        # Oldest first: each connection is looked at here once, when it has expired.
        stale = trio.current_time() - KEEPALIVE_EXPIRY
        while idle and idle[0][1] < stale:
            connection, _, _ = idle.popleft()
            await connection.aclose()

    async def _release(
        self,
        origin: _Origin,
        connection: httpcore.AsyncHTTPConnection,
        socket: TrioSocketStream | None,
    ) -> None:
        try:
            idle = self._idle.setdefault(origin, deque())
            await self._close_expired(idle)
            if not self._closed and connection.is_idle() and len(idle) < self._max_keepalive:
                idle.append((connection, trio.current_time(), socket))
            else:
                await connection.aclose()
        finally:
            self._slots.release()


class RequestParts(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A request body sent as the pieces it was built from, each as it is.

    With httpx's ``content=``, a body is one ``bytes`` (joining a long session's
    body allocated and copied all of it for every call) or an iterable wrapped
    in a stream this pool cannot tell from a one-off one. These pieces can be
    sent again (see :meth:`KeepAliveTransport.handle_async_request`); the
    request must carry their ``Content-Length``.
    """

    def __init__(self, parts: tuple[bytes, ...]) -> None:
        self.parts = parts
        self.length = sum(len(part) for part in parts)

    def __iter__(self) -> Iterator[bytes]:
        yield from self.parts

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part


_REPLAYABLE = (httpx.ByteStream, RequestParts)


class _ResponseStream(httpx.AsyncByteStream):
    """A response body that hands its connection back when closed."""

    def __init__(
        self,
        transport: KeepAliveTransport,
        origin: _Origin,
        connection: httpcore.AsyncHTTPConnection,
        response: httpcore.Response,
    ) -> None:
        self._transport = transport
        self._origin = origin
        self._connection = connection
        self._response = response
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for part in self._response.aiter_stream():
                yield part

    async def aclose(self) -> None:
        """Close the body (a body not read to its end closes the connection).

        Cancellation: shielded, so the slot is always given back.
        """
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            try:
                with _as_httpx_errors():
                    await self._response.aclose()
            finally:
                # httpcore names a response's socket (the TLS one over TLS) only here.
                socket = self._response.extensions.get("network_stream")
                if not isinstance(socket, TrioSocketStream):
                    socket = None
                await self._transport._release(self._origin, self._connection, socket)


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80
