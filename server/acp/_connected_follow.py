"""Following a session of a running server over its WebSocket, for the connected link.

``hello {after: cursor}``, then events in seq order (docs/protocol.md §2). After a
dropped connection (network, server restart, 1013 slow consumer, 1001 shutdown)
it reconnects with backoff from the last seq handed to the sink: no gap, no
duplicate. :class:`SessionFollower` is the WebSocket half of
:class:`~._connected.ConnectedLink` (with the backoff pause its REST calls share);
separate from :mod:`._connected`, the REST half, because a connection's life
(handshake, liveness, close codes) is a protocol phase of its own.
"""

from __future__ import annotations

import json
from typing import Final

import attrs
import httpx
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from agents.events import SessionDeleted
from sessions import JSON

from ._link import EventSink, LinkError

_MAX_MESSAGE: Final = 64 * 1024 * 1024
_FATAL_CLOSE: Final = {1008: "protocol error", 4401: "unauthorized", 4404: "not_found"}


@attrs.define
class _Cursor:
    seq: int  # the last seq handed to the sink


class SessionFollower:
    """Follows sessions over the WebSocket of the server *_http* points at.

    The subclass sets the attributes (see :class:`~._connected.ConnectedLink`).
    """

    _http: httpx.AsyncClient
    _token: str
    backoff: float
    max_backoff: float
    attempts: int
    liveness: float
    connections: int  # WebSocket connections opened so far (tests, diagnostics)

    async def _pause(self, failures: int, problem: str) -> None:
        if failures >= self.attempts:
            raise LinkError(
                "unavailable", f"giving up after {failures} attempts: {problem}"
            ) from None
        await trio.sleep(min(self.backoff * 2 ** (failures - 1), self.max_backoff))

    async def follow(self, session_id: str, *, after: int, sink: EventSink) -> None:
        """Follow over the WebSocket, reconnecting from the cursor (see the module docstring).

        Raises:
            LinkError: the token or session was refused, or the server stayed
                unreachable for ``attempts`` consecutive tries.

        Cancellation: safe at any point; the connection is closed.
        """
        cursor = after
        failures = 0
        while True:
            try:
                seq, problem = await self._follow_once(session_id, cursor, sink)
            except (OSError, trio.TooSlowError) as error:  # could not connect
                seq, problem = cursor, f"cannot connect: {error!r}"
            if problem is None:
                return  # the session was deleted: its log ended
            if seq > cursor:
                failures = 0  # that connection delivered: the server is there
            cursor = seq
            failures += 1
            await self._pause(failures, problem)

    async def _follow_once(
        self, session_id: str, cursor: int, sink: EventSink
    ) -> tuple[int, str | None]:
        """One connection: ``(cursor, why it ended)``; the cursor is the last seq handed
        over, and the reason ``None`` once the session's ``session.deleted`` was."""
        url = self._http.base_url
        host, port = url.host, url.port or (443 if url.scheme == "https" else 80)
        resource = f"{url.raw_path.decode().rstrip('/')}/v1/sessions/{session_id}/ws"
        headers = [(b"Authorization", f"Bearer {self._token}".encode())]
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
        with trio.fail_after(10):
            if url.scheme == "https":
                stream = await trio.open_ssl_over_tcp_stream(host, port)
            else:
                stream = await trio.open_tcp_stream(host, port)
        # We own the TCP stream: trio-websocket leaves it open when the peer vanishes
        # or the handshake is refused. Outcomes leave the nursery as values, so the
        # caller sees plain exceptions rather than groups.
        fatal: LinkError | None = None
        ended: tuple[int, str | None] = (cursor, "connection closed")
        async with stream, trio.open_nursery() as nursery:
            try:
                with trio.fail_after(10):
                    ws = await wrap_client_stream(
                        nursery,
                        stream,
                        host if port in (80, 443) else f"{host}:{port}",
                        resource,
                        extra_headers=headers,
                        max_message_size=_MAX_MESSAGE,
                    )
            except ConnectionRejected as error:
                if error.status_code in (401, 403):
                    fatal = LinkError("unauthorized", "the server refused the token")
                elif error.status_code == 404:
                    fatal = LinkError("not_found", f"session {session_id!r} not found")
                else:
                    ended = (cursor, f"handshake refused with HTTP {error.status_code}")
                nursery.cancel_scope.cancel()
            except (trio.TooSlowError, HandshakeError, OSError, trio.BrokenResourceError) as error:
                ended = (cursor, f"the WebSocket handshake failed: {error!r}")
                nursery.cancel_scope.cancel()
            else:
                state = _Cursor(cursor)
                try:
                    await ws.send_message(json.dumps({"type": "hello", "after": cursor}))
                    self.connections += 1
                    ended = (state.seq, await self._read(ws, state, sink))
                except ConnectionClosed as closed:
                    ended = (state.seq, self._closed(closed))
                except (OSError, trio.BrokenResourceError) as error:
                    ended = (state.seq, f"connection lost: {error!r}")
                except LinkError as error:
                    fatal = error
                else:
                    # Ended by us (liveness, gap): say goodbye, briefly. Cancelled, we
                    # cannot (the reader task that would see the reply is cancelled
                    # too): the TCP stream just closes, as when a client vanishes.
                    with trio.move_on_after(2):
                        await ws.aclose()
                finally:
                    nursery.cancel_scope.cancel()
        if fatal is not None:
            raise fatal
        return ended

    async def _read(self, ws: WebSocketConnection, cursor: _Cursor, sink: EventSink) -> str | None:
        """Hand events to *sink* until the connection should be given up; why
        (``None``: the session was deleted, nothing more will come)."""
        while True:
            raw: str | bytes | None = None
            with trio.move_on_after(self.liveness):
                raw = await ws.get_message()
            if raw is None:
                return f"no frame for {self.liveness:g} s"
            try:
                frame: JSON = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(frame, dict):
                continue
            seq = frame.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                if seq <= cursor.seq:
                    continue  # already handed over
                if seq != cursor.seq + 1:
                    return f"gap after seq {cursor.seq}; resyncing"
                await sink([frame])
                cursor.seq = seq
                if frame.get("type") == SessionDeleted.type:
                    return None
            elif frame.get("type") == "error" and frame.get("code") in (
                "unauthorized",
                "not_found",
            ):
                raise LinkError(str(frame["code"]), str(frame.get("message", "")))

    def _closed(self, error: ConnectionClosed) -> str:
        if error.reason is None:
            return "connection closed"
        code, text = error.reason.code, error.reason.reason or ""
        fatal = _FATAL_CLOSE.get(code)
        if fatal is not None:
            raise LinkError(
                "not_found" if code == 4404 else "unauthorized" if code == 4401 else "bad_hello",
                f"the server closed the connection: {fatal} ({text})",
            )
        return f"closed with code {code} {text}".rstrip()


__all__ = ["SessionFollower"]
