"""httpcore's network backend for trio, without a cancel scope per untimed read or write.

httpcore's own trio backend enters ``trio.fail_after`` around every read and write,
with an infinite deadline when there is no timeout; the provider streams with no
read timeout (its first-token and idle deadlines are trio scopes of its own), so
each network read of a model's stream paid for a scope that could never fire.
Here an untimed read or write goes straight to the socket stream; a timed one is
bounded as before. Exceptions are httpcore's, mapped as its trio backend maps
them, so the pool and httpx see the same errors.
"""

# The ``timeout`` parameters are httpcore's interface, not a choice made here.
# ruff: noqa: ASYNC109

from __future__ import annotations

import ssl
from collections.abc import Iterable

import httpcore
import trio

_NetworkErrors = (trio.BrokenResourceError, trio.ClosedResourceError)


class TrioSocketStream(httpcore.AsyncNetworkStream):
    """One TCP (or TLS over TCP) connection for httpcore.

    :attr:`received` counts the bytes read, so the pool can tell whether a failed
    request on a reused connection got any of its response (see ``_http_pool.py``).
    """

    def __init__(self, stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]) -> None:
        self._stream = stream
        self.received = 0
        self._socket = (
            stream.socket
            if isinstance(stream, trio.SocketStream)
            else (stream.transport_stream.socket)
        )

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            if timeout is None:
                data = bytes(await self._stream.receive_some(max_bytes))
            else:
                with trio.fail_after(timeout):
                    data = bytes(await self._stream.receive_some(max_bytes))
        except trio.TooSlowError as exc:
            raise httpcore.ReadTimeout(str(exc)) from exc
        except _NetworkErrors as exc:
            raise httpcore.ReadError(str(exc)) from exc
        self.received += len(data)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            if timeout is None:
                await self._stream.send_all(buffer)
            else:
                with trio.fail_after(timeout):
                    await self._stream.send_all(buffer)
        except trio.TooSlowError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except _NetworkErrors as exc:
            raise httpcore.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        assert isinstance(self._stream, trio.SocketStream), "TLS over TLS is not supported"
        tls = trio.SSLStream(
            self._stream,
            ssl_context=ssl_context,
            server_hostname=server_hostname,
            https_compatible=True,
        )
        try:
            with trio.fail_after(float("inf") if timeout is None else timeout):
                await tls.do_handshake()
        except BaseException as exc:
            await trio.aclose_forcefully(self._stream)
            if isinstance(exc, trio.TooSlowError):
                raise httpcore.ConnectTimeout(str(exc)) from exc
            if isinstance(exc, (trio.BrokenResourceError, ssl.SSLError)):
                raise httpcore.ConnectError(str(exc)) from exc
            raise
        return TrioSocketStream(tls)

    def get_extra_info(self, info: str) -> object:
        if info == "ssl_object" and isinstance(self._stream, trio.SSLStream):
            # trio's SSLStream forwards SSLObject attributes, not the object itself.
            return self._stream._ssl_object
        if info == "client_addr":
            return self._socket.getsockname()
        if info == "server_addr":
            return self._socket.getpeername()
        if info == "socket":
            return self._socket
        if info == "is_readable":
            return self._socket.is_readable()
        return None


class TrioNetworkBackend(httpcore.AsyncNetworkBackend):
    """TCP connections as :class:`TrioSocketStream`\\ s (no Unix sockets)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[object] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with trio.fail_after(float("inf") if timeout is None else timeout):
                stream = await trio.open_tcp_stream(host, port, local_address=local_address)
        except trio.TooSlowError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except (OSError, trio.BrokenResourceError) as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        for option in socket_options or ():
            stream.setsockopt(*option)  # type: ignore[misc]
        return TrioSocketStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[object] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.UnsupportedProtocol("Unix sockets are not supported here")

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)
