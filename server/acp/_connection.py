"""The adapter's end of the stdio connection: lines in, one writer out, our requests.

- :class:`LineReader` cuts the byte stream from the client into lines (a line
  longer than :data:`MAX_LINE` is skipped whole and reported, not buffered).
- :class:`Peer` owns everything sent to the client. Every message is one line put
  on a bounded memory channel; :meth:`Peer.run_writer`, the only task that ever
  touches the output stream, writes them in order. A producer that finds the
  channel full waits (back-pressure up to the runtime's subscription, which then
  resumes from its cursor), so a slow client slows the adapter down, never makes
  it buffer without bound.
- Requests we send (``fs/*``, ``terminal/*``, ``session/request_permission``)
  get our own ids (:class:`~server.acp._jsonrpc.OutboundIds`); the dispatcher
  hands their responses to :meth:`Peer.deliver`, which wakes the waiting caller.
  A caller that gives up (cancelled) forgets its id, so a late answer is logged
  and dropped, unless it asked for its *undo*: a request whose effect the client
  starts as it reads it (``terminal/create`` starts the command) still gets its
  answer, bounded by :data:`UNDO_TIMEOUT`, and the undo (kill and release the
  terminal) is done with it.

Cancellation: a cancelled :meth:`Peer.request` sends ``$/cancel_request`` for it
(without an undo) and forgets its id (with an undo, once the undo is done). After
:meth:`Peer.abandon` (the adapter stops reading) requests are still sent but never
waited for. After :meth:`Peer.close`, requests fail with :class:`ConnectionClosed`,
notifications and responses are dropped, and the writer flushes what is queued for
at most its *flush_timeout* before it closes the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import attrs
import trio

from sessions import JSON, JSONObject

from ._jsonrpc import (
    OutboundIds,
    RequestId,
    Response,
    RpcError,
    encode_error,
    encode_notification,
    encode_request,
    encode_result,
)

log = logging.getLogger("agent_runtime.acp")

MAX_LINE: Final = 64 * 1024 * 1024
OUTGOING_BUFFER: Final = 256
FLUSH_TIMEOUT: Final = 2.0
# Seconds a cancelled request with an undo still waits for its answer, and undoes it.
UNDO_TIMEOUT: Final = 5.0
# ACP's (and LSP's) notification that a request is no longer waited for.
CANCEL_REQUEST: Final = "$/cancel_request"

Undo = Callable[[JSON], Awaitable[None]]


class ConnectionClosed(Exception):
    """The client is gone (or the adapter is stopping): no answer will come."""


class TooLong:
    """Marker: a line over the limit was skipped."""


class LineReader:
    """Lines of *stream* without their newline; ``None`` at end of input.

    Cancellation: safe; bytes already received stay buffered for the next call.
    """

    def __init__(self, stream: trio.abc.ReceiveStream, max_line: int = MAX_LINE) -> None:
        self._stream = stream
        self._max = max_line
        self._buffer = bytearray()
        self._skipping = False
        self._eof = False

    async def next_line(self) -> bytes | TooLong | None:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                if self._skipping:
                    self._skipping = False
                    return TooLong()
                return line
            if self._eof:
                if not self._buffer:
                    return None
                line = bytes(self._buffer)
                self._buffer.clear()
                return TooLong() if self._skipping else line
            if len(self._buffer) > self._max:
                self._buffer.clear()
                self._skipping = True
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                self._eof = True
            self._buffer += chunk


@attrs.define(eq=False)
class _Waiter:
    done: trio.Event = attrs.field(factory=trio.Event)
    result: JSON = None
    error: RpcError | ConnectionClosed | None = None


class Peer:
    """What the adapter says to the client (see the module docstring)."""

    def __init__(
        self, buffer: int = OUTGOING_BUFFER, *, flush_timeout: float = FLUSH_TIMEOUT
    ) -> None:
        self._send, self._receive = trio.open_memory_channel[str](buffer)
        self._flush_timeout = flush_timeout
        self._ids = OutboundIds()
        self._waiting: dict[int, _Waiter] = {}
        self._closed = False
        self._abandoned = False
        self._writer_scope = trio.CancelScope()
        self.gone = trio.Event()  # the output broke: the client went away

    @property
    def closed(self) -> bool:
        return self._closed

    async def run_writer(self, stream: trio.abc.SendStream) -> None:
        """Write every queued line, in order, until :meth:`close`; then close *stream*.

        Cancellation: stops writing; the stream is still closed.
        """
        try:
            with self._writer_scope:
                async with self._receive:
                    async for line in self._receive:
                        await stream.send_all(line.encode() + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            log.warning("the client stopped reading (%s); stopping", error)
            self.gone.set()
            self.close()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                await stream.aclose()

    async def _emit(self, line: str) -> bool:
        if self._closed:
            return False
        try:
            await self._send.send(line)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def notify(self, method: str, params: JSONObject) -> None:
        """Send a notification (dropped once closed)."""
        await self._emit(encode_notification(method, params))

    async def respond(self, request_id: RequestId, result: JSON) -> None:
        await self._emit(encode_result(request_id, result))

    async def respond_error(self, request_id: RequestId, error: RpcError) -> None:
        await self._emit(encode_error(request_id, error))

    async def request(self, method: str, params: JSONObject, *, undo: Undo | None = None) -> JSON:
        """Call *method* on the client; its result.

        Raises:
            RpcError: the client answered with an error (or an invalid response).
            ConnectionClosed: the connection closed before the answer came.

        Cancellation: the request is abandoned and the client is told so
        (``$/cancel_request``, so an editor can take down a dialog nobody waits
        on any more); its late answer is ignored. With *undo*, a request already
        sent still waits for its answer (shielded, at most :data:`UNDO_TIMEOUT`,
        and not once the adapter stops reading) and hands a result to *undo*
        (within the same bound) before the cancellation goes on: the client may
        have started something only an answer names.
        """
        if self._closed:
            raise ConnectionClosed(f"cannot call {method}: the connection is closed")
        if self._abandoned:  # stopping: say it (a kill, a release), expect no answer
            await self._emit(encode_request(self._ids.issue(method), method, params))
            raise ConnectionClosed(f"{method} sent while stopping; not waiting for its answer")
        request_id = self._ids.issue(method)
        waiter = _Waiter()
        self._waiting[request_id] = waiter
        try:
            if not await self._emit(encode_request(request_id, method, params)):
                raise ConnectionClosed(f"cannot call {method}: the connection is closed")
            try:
                await waiter.done.wait()
            except trio.Cancelled:
                if undo is None:
                    self._tell_cancelled(request_id)
                else:
                    with trio.CancelScope(shield=True), trio.move_on_after(UNDO_TIMEOUT):
                        await waiter.done.wait()
                        if waiter.error is None:
                            try:
                                await undo(waiter.result)
                            except Exception:  # must not replace the cancellation
                                log.exception("undoing the abandoned %s failed", method)
                raise
        finally:
            self._waiting.pop(request_id, None)
            self._ids.forget(request_id)
        if waiter.error is not None:
            raise waiter.error
        return waiter.result

    def _tell_cancelled(self, request_id: int) -> None:
        """Queue ``$/cancel_request`` for *request_id* without waiting: it runs in a
        cancelled task, and it is a courtesy (a full queue or a closed writer skips it)."""
        if self._closed:
            return
        line = encode_notification(CANCEL_REQUEST, {"requestId": request_id})
        try:
            self._send.send_nowait(line)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            log.debug("not telling the client that request %r is cancelled", request_id)

    def deliver(self, response: Response) -> None:
        """Hand a response from the client to the request it answers (if still waiting)."""
        method = self._ids.match(response)
        waiter = self._waiting.get(response.id) if type(response.id) is int else None
        if method is None or waiter is None:
            if self._ids.issued(response.id):  # answered late: we had given up on it
                log.debug("ignoring a late response to abandoned request %r", response.id)
            else:
                what = "an invalid response" if not response.valid else "a response"
                log.warning("ignoring %s to no request of ours (id %r)", what, response.id)
            return
        if response.error is not None:
            if not response.valid:
                log.warning("invalid response to our %s: %s", method, response.error.message)
            waiter.error = response.error
        else:
            waiter.result = response.result
        waiter.done.set()

    def abandon(self) -> None:
        """Stop waiting for answers (the adapter is stopping and reads no more).

        Pending requests fail with :class:`ConnectionClosed`; later ones are still
        sent (a terminal's kill and release reach a client that still listens) but
        fail at once instead of waiting for an answer that nobody would read.
        """
        self._abandoned = True
        self._fail_waiters()

    def _fail_waiters(self) -> None:
        for waiter in self._waiting.values():
            waiter.error = ConnectionClosed("the connection closed")
            waiter.done.set()

    def close(self) -> None:
        """Stop sending: pending requests fail, the writer flushes (bounded) and ends."""
        if self._closed:
            return
        self._closed = True
        self._send.close()
        self._fail_waiters()
        self._writer_scope.deadline = trio.current_time() + self._flush_timeout
