"""hypercorn's HTTP and WebSocket protocols on our accept loop, with bounded sends.

hypercorn's trio worker writes each chunk with ``send_all`` in a cancel-shielded
scope, under a per-connection lock. Nothing above it (the app's timeouts,
``graceful_timeout``) can interrupt a write to a peer that has stopped reading, and
every later write (a WebSocket close frame, the end of an SSE body) queues behind
it: the handler, its subscription and its buffers are held forever. Here a write
that moves no byte for ``send_timeout`` aborts the connection at the socket. It is
reset rather than closed: bytes queued behind unread data can never arrive, and a
reset frees the kernel's send buffer at once instead of leaving an orphan socket
probing a zero window. hypercorn is then told the connection closed, so the app
sees a disconnect and its handler is cancelled like on any hang-up. A write still
blocked when shutdown's ``graceful_timeout`` runs out is cut the same way.

Second, hypercorn restarts a connection's keep-alive timer (which is also what
closes idle connections when shutdown begins) from the task that sent the
response. quart-trio cancels that task as soon as the request is complete, often
before the timer is started, and the idle connection then stays open until
``graceful_timeout``. Timer updates and the socket close are shielded here.

:func:`serve_app` is hypercorn's trio ``worker_serve`` for plain TCP binds (the
server never configures TLS, QUIC or statsd) with this connection class. It
relies on hypercorn internals (``TCPServer``, ``Lifespan``, ``WorkerContext``),
pinned by the ``hypercorn`` requirement and covered by the live tests.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from functools import partial
from typing import cast

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, Event, RawData
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, Framework, LifespanState
from hypercorn.utils import repr_socket_addr, wrap_app

from sessions import held_quickly

logger = logging.getLogger("agent_runtime.server")

# struct linger {on, seconds}: on with 0 s makes close() send a reset and drop the buffer.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


class WriteScopes:
    """The shielded writes in flight, so that the shutdown deadline can still cut them.

    A shield keeps every outer cancellation out, ``graceful_timeout``'s included;
    only a deadline on the shielded scope itself ends it.
    """

    def __init__(self) -> None:
        self.deadline = math.inf
        self._scopes: set[trio.CancelScope] = set()

    def add(self, scope: trio.CancelScope) -> None:
        self._scopes.add(scope)

    def discard(self, scope: trio.CancelScope) -> None:
        self._scopes.discard(scope)

    def cut_at(self, deadline: float) -> None:
        """Writes still blocked at *deadline*, or started after it, give up then."""
        self.deadline = deadline
        for scope in self._scopes:
            scope.deadline = min(scope.deadline, deadline)


class BoundedWriter:
    """Writes to one TCP socket, resetting it when the peer takes no byte for a while."""

    def __init__(
        self,
        stream: trio.SocketStream,
        *,
        send_timeout: float,
        scopes: WriteScopes,
        on_stalled: Callable[[], None],
    ) -> None:
        self._stream = stream
        self._send_timeout = send_timeout
        self._scopes = scopes
        self._on_stalled = on_stalled
        try:
            self._peer = repr_socket_addr(stream.socket.family, stream.socket.getpeername())
        except OSError:
            self._peer = "a disconnected peer"

    async def write(self, data: bytes) -> bool:
        """Write all of *data*; ``False`` if the connection is gone or was just reset.

        Cancellation: shielded (a frame cut in the middle would corrupt everything
        after it), but bounded by ``send_timeout`` without progress and by
        :meth:`WriteScopes.cut_at`.
        """
        scopes = self._scopes
        if trio.current_time() >= scopes.deadline:
            return await self._cut()
        # The common case: the kernel takes the whole frame at once. Trying that
        # first, without trio's socket wrapper, saves a cancel scope and two
        # schedule points per frame.
        try:
            sent = os.write(self._stream.socket.fileno(), data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return False
        if sent == len(data):
            return True
        data = data[sent:]
        with trio.CancelScope(shield=True) as scope:
            scopes.add(scope)
            try:
                await self._send_with_progress(data, scope)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                return False
            else:
                return True
            finally:
                scopes.discard(scope)
        # The scope's deadline passed: a stall, or the shutdown cut.
        if trio.current_time() < scopes.deadline:
            self._on_stalled()
            logger.warning(
                "closing the connection from %s: it accepted no data for %g s",
                self._peer,
                self._send_timeout,
            )
        return await self._cut()

    async def _cut(self) -> bool:
        with trio.CancelScope(shield=True):
            await self._reset()
        return False

    async def _send_with_progress(self, data: bytes, scope: trio.CancelScope) -> None:
        """``send_all`` under *scope*, whose deadline moves on with every byte taken.

        One scope for both bounds keeps the common case (the kernel takes it all at
        once) cheap. Each ``socket.send`` returns as soon as the kernel takes any
        byte, so the peer gets ``send_timeout`` from its last progress.
        """
        sock = self._stream.socket
        with memoryview(data) as view:
            total = 0
            while total < len(view):
                scope.deadline = min(
                    trio.current_time() + self._send_timeout, self._scopes.deadline
                )
                with view[total:] as rest:
                    total += await sock.send(rest)

    async def _reset(self) -> None:
        with contextlib.suppress(OSError):  # already closed: nothing left to reset
            self._stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        # Closing also wakes this connection's reader and any writer waiting on it.
        await self._stream.aclose()


class BoundedTCPServer(TCPServer):
    """hypercorn's TCP connection, writing through a :class:`BoundedWriter`."""

    def __init__(
        self,
        app: AppWrapper,
        config: HypercornConfig,
        context: WorkerContext,
        state: LifespanState,
        stream: trio.SocketStream,
        *,
        writer: Callable[[trio.SocketStream], BoundedWriter],
    ) -> None:
        # hypercorn annotates the stream as SSL but treats a plain one the same.
        super().__init__(
            app, config, context, state, cast("trio.SSLStream[trio.SocketStream]", stream)
        )
        self._writer = writer(stream)

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, RawData):
            async with held_quickly(self.send_lock):
                if not await self._writer.write(event.data):
                    await self.protocol.handle(Closed())
        elif isinstance(event, Closed):
            # The sender is often being cancelled (its response is complete); a
            # cancelled close would leave the socket open.
            with trio.CancelScope(shield=True):
                await self._close()
            await self.protocol.handle(Closed())
        else:
            # Updated: a cancelled restart would leave the connection without its
            # keep-alive timer, so neither idling nor shutdown would close it.
            with trio.CancelScope(shield=True):
                await super().protocol_send(event)


async def serve_app(
    app: Framework,
    config: HypercornConfig,
    *,
    send_timeout: float,
    on_stalled: Callable[[], None],
    shutdown_trigger: Callable[[], Awaitable[object]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve *app* on *config*'s binds until *shutdown_trigger* returns.

    Reports the bound URLs through *task_status*. At shutdown, accepting stops and
    idle keep-alive connections close at once; the others get ``graceful_timeout``.

    Raises:
        OSError: a bind address cannot be bound.

    Cancellation: cancelling stops every connection at once.
    """
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    context = WorkerContext(None)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections:
            sockets = config.create_sockets()
            assert not sockets.secure_sockets and not sockets.quic_sockets, "TLS is not supported"
            listeners: list[trio.SocketListener] = []
            binds: list[str] = []
            for sock in sockets.insecure_sockets:
                sock.listen(config.backlog)
                listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
                binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
            scopes = WriteScopes()
            writer = partial(
                BoundedWriter, send_timeout=send_timeout, scopes=scopes, on_stalled=on_stalled
            )
            handler = partial(
                BoundedTCPServer,
                wrapped,
                config,
                context,
                ConnectionState(lifespan_state.copy()),
                writer=writer,
            )
            task_status.started(binds)
            try:
                async with trio.open_nursery() as accepting:
                    accepting.start_soon(
                        partial(
                            trio.serve_listeners, handler, listeners, handler_nursery=connections
                        )
                    )
                    await shutdown_trigger()
                    accepting.cancel_scope.cancel()
            finally:
                # Wakes every keep-alive timer: idle connections close now.
                await context.terminated.set()
                deadline = trio.current_time() + config.graceful_timeout
                connections.cancel_scope.deadline = deadline
                scopes.cut_at(deadline)
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
