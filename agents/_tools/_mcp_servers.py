"""The MCP servers of one runtime: started on first use, restarted after failures.

:func:`open_mcp_servers` runs one task per configured server in its nursery.
A server's task waits until the server is wanted (at once for ``startup =
"eager"``, on the first :meth:`McpServers.tools` / :meth:`McpServers.call`
otherwise), connects and initializes once (``_mcp_client.connect``), lists the
tools, then follows the connection: it re-lists the tools on
``notifications/tools/list_changed`` and notices the connection end. Then it
waits out a backoff (0.5 s doubling to 30 s; back to 0.5 s after a healthy
minute) and starts the server again. Callers never touch the task: they wait
for the state it publishes.

A call in flight when the server stops resolves as ``failed`` (the SDK wakes
every waiting request when the connection closes); so does one in flight when
the server sends a broken JSON-RPC answer, which fails its connection like a
crash. A stdio server's ``last_error`` in its status (and the log) ends with the
last lines it wrote to stderr (bounded, control characters escaped); a call is
told the error alone. At most
:data:`MAX_CONCURRENT_CALLS` calls run per server; later ones queue for a slot
within their own timeout.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import trio

from sessions import JSONObject

from .._core._mcp import McpOutcome, McpServerConfig, McpTool, StdioTransport
from .._errors import McpUnavailable
from ._mcp_client import MISSING_SDK, McpConnection, connect
from ._mcp_output import StderrTail
from ._mcp_status import McpMetrics, McpServerStatus, ServerState
from ._mcp_transports import open_transport, unrunnable

if TYPE_CHECKING:
    from ._mcp_transports import Transport

logger = logging.getLogger("agents.mcp")

MAX_CONCURRENT_CALLS = 16
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
#: A connection that stayed up this long resets the backoff to its first step.
HEALTHY_AFTER = 60.0
#: How long ``initialize`` and the first ``tools/list`` may take, and so the longest a
#: caller waits for a server starting (a turn waits so only for a start that may work).
START_TIMEOUT = 20.0


@attrs.define(eq=False)
class _Server:
    """The state a server's task publishes (only that task writes it)."""

    config: McpServerConfig
    state: ServerState = "idle"
    tools: tuple[McpTool, ...] = ()
    connection: McpConnection | None = None
    restarts: int = 0
    tool_refreshes: int = 0
    last_error: str | None = None
    #: What a stdio server wrote to stderr before that error: shown to operators
    #: (status, logs) after it, never to the model (a tool result quotes only the
    #: error: a server's stderr may hold its configuration, secrets included).
    last_stderr: StderrTail | None = None
    retry_at: float = 0.0
    crashed: bool = False  # in backoff after a connection that was ready (not a failed start)
    #: Start attempts that failed since the server was last ready (or since boot).
    failed_starts: int = 0
    wanted: trio.Event = attrs.field(factory=trio.Event)
    slots: trio.CapacityLimiter = attrs.field(
        factory=lambda: trio.CapacityLimiter(MAX_CONCURRENT_CALLS)
    )


@asynccontextmanager
async def open_mcp_servers(
    configs: Sequence[McpServerConfig],
    metrics: McpMetrics | None = None,
    *,
    start_timeout: float = START_TIMEOUT,
    shutdown_timeout: float = 5.0,
    transport: Transport = open_transport,
) -> AsyncIterator[McpServers]:
    """The servers of *configs*, eager ones starting now; all stopped on exit.

    *metrics*: where calls and restarts are counted (one per registry: the
    runtime's, shared by every set of servers it opens). *transport* opens a
    server's streams (tests pass in-memory ones).

    Cancellation: on exit (cancelled or not) every server is asked to stop (stdio:
    stdin closed, then SIGTERM/SIGKILL by the SDK; HTTP: session DELETE); a
    server still running near *shutdown_timeout* has its process group killed
    and its task cancelled, so the block exits within about *shutdown_timeout*.
    """
    servers = McpServers(configs, metrics or McpMetrics(), start_timeout, transport)
    for config in configs:
        # Said now: a lazy server would otherwise stay silent until a turn wants it.
        stdio = config.transport
        if not isinstance(stdio, StdioTransport):
            continue
        problem = unrunnable(stdio)
        if problem is not None:
            logger.warning(
                "MCP server %s: command %r %s; its tools stay unavailable until it can start",
                config.name,
                stdio.command,
                problem,
            )
    async with trio.open_nursery() as nursery:
        for server in servers._servers.values():
            nursery.start_soon(servers._run, server)
            if server.config.startup == "eager":
                server.wanted.set()
        try:
            yield servers
        finally:
            servers._stop()
            nursery.start_soon(servers._enforce_shutdown, nursery.cancel_scope, shutdown_timeout)


# How long a restart may take once its backoff is over, for a caller deciding to wait.
_RESTART_SLACK = 5.0


class McpServers:
    """The configured MCP servers (see the module docstring); made by :func:`open_mcp_servers`."""

    def __init__(
        self,
        configs: Sequence[McpServerConfig],
        metrics: McpMetrics,
        start_timeout: float,
        transport: Transport = open_transport,
    ) -> None:
        self._servers = {c.name: _Server(c) for c in configs}
        if len(self._servers) != len(configs):
            raise ValueError("MCP server names must be unique")
        self._metrics = metrics
        self._start_timeout = start_timeout
        self._transport = transport
        self._changed = trio.Event()  # replaced on every published change
        self._stopping = trio.Event()
        self._running = len(self._servers)
        self._all_stopped = trio.Event()
        if not self._servers:
            self._all_stopped.set()

    def configs(self) -> tuple[McpServerConfig, ...]:
        return tuple(s.config for s in self._servers.values())

    def names(self) -> tuple[str, ...]:
        return tuple(self._servers)

    def status(self) -> tuple[McpServerStatus, ...]:
        return tuple(self._status(s) for s in self._servers.values())

    async def tools(self, server: str) -> tuple[McpTool, ...]:
        """The server's current tools, starting it if needed (waits at most ``start_timeout``).

        A server that crashed is waited for through one restart; one that failed
        to start is not waited for, in backoff or starting again, until it was
        ready once more: only its first start (after boot, or after a crash)
        can cost a caller up to ``start_timeout``.

        Raises:
            McpUnavailable: unknown server, it cannot start, or it is in backoff
                after a failure (the reason says which, and why).
        """
        entry = self._get(server)
        await self._ready(entry)
        return entry.tools

    async def call(
        self,
        server: str,
        tool: str,
        arguments: JSONObject,
        timeout: float,  # noqa: ASYNC109 - the SDK's read timeout, which sends the cancel
    ) -> McpOutcome:
        """Call the server's *tool*; server trouble is an outcome (``failed``, ``timeout``).

        Starting the server, if needed, has its own ``start_timeout``; *timeout*
        covers waiting for a call slot and the call itself.

        Cancellation: if the caller is cancelled, the SDK sends the server
        ``notifications/cancelled`` for the request, then ``trio.Cancelled``
        propagates (counted as outcome ``cancelled``).
        """
        entry = self._servers.get(server)
        if entry is None:
            return McpOutcome("failed", f"unknown MCP server {server!r}; the call was not sent")
        started = trio.current_time()
        kind = "cancelled"
        try:
            outcome = await self._call(entry, tool, arguments, timeout)
            kind = outcome.kind
            return outcome
        finally:
            self._metrics.calls.labels(server, tool, kind).inc()
            self._metrics.call_seconds.labels(server, tool).observe(trio.current_time() - started)

    async def wait_for(
        self, server: str, condition: Callable[[McpServerStatus], bool]
    ) -> McpServerStatus:
        """Until *server*'s status meets *condition* (readiness probes, tests); that status.

        Does not start a lazy server.

        Raises:
            McpUnavailable: unknown server.
        """
        entry = self._get(server)
        while not condition(status := self._status(entry)):
            await self._changed.wait()
        return status

    # ------------------------------------------------------------------- callers' side

    def _get(self, server: str) -> _Server:
        entry = self._servers.get(server)
        if entry is None:
            known = ", ".join(self._servers) or "none"
            raise McpUnavailable(f"unknown MCP server {server!r} (configured: {known})")
        return entry

    async def _ready(self, entry: _Server) -> McpConnection:
        name = entry.config.name
        entry.wanted.set()
        deadline = trio.current_time() + self._start_timeout
        restarts = entry.restarts
        with trio.move_on_at(deadline):
            while True:
                connection = entry.connection
                if entry.state == "ready" and connection and not connection.closed.is_set():
                    return connection
                # A server that just crashed is back in 0.5 s: its restart is
                # waited for, once. One that failed to start (a missing command)
                # fails the caller at once, or every model step listing its tools
                # would wait out its backoff. So does a restart due after the deadline.
                if entry.state == "backoff" and (
                    not entry.crashed
                    or entry.restarts > restarts
                    or entry.retry_at + _RESTART_SLACK > deadline
                ):
                    wait = max(entry.retry_at - trio.current_time(), 0.0)
                    raise McpUnavailable(f"{entry.last_error} (retrying in {wait:.1f} s)")
                if entry.state == "starting" and entry.failed_starts:
                    # Starting again after failing to start: it will likely fail the
                    # same way, and a hang in initialize would cost the whole start
                    # timeout at every model step (backoff is shorter than that).
                    raise McpUnavailable(f"{entry.last_error} (starting again)")
                if entry.state == "stopped":
                    raise McpUnavailable(entry.last_error or f"the MCP server {name} is stopped")
                await self._changed.wait()
        raise McpUnavailable(
            f"the MCP server {name} did not become ready within {self._start_timeout:g} s"
        )

    async def _call(
        self,
        entry: _Server,
        tool: str,
        arguments: JSONObject,
        timeout: float,  # noqa: ASYNC109 - see call()
    ) -> McpOutcome:
        try:
            connection = await self._ready(entry)
        except McpUnavailable as exc:
            return McpOutcome("failed", f"{exc}; the call was not sent")
        deadline = trio.current_time() + timeout
        # Only the wait for a slot is under a cancel scope: the call's own timeout is
        # the SDK's, so that it, not a cancel scope racing it, decides "timeout".
        acquired = False
        with trio.move_on_after(timeout):
            await entry.slots.acquire()
            acquired = True
        if not acquired:
            return McpOutcome(
                "failed",
                f"the MCP server {entry.config.name} had {MAX_CONCURRENT_CALLS} calls running "
                f"for all of {timeout:g} s; the call was not sent",
            )
        try:
            remaining = deadline - trio.current_time()
            return await connection.call(tool, arguments, remaining, timeout=timeout)
        finally:
            entry.slots.release()

    # ------------------------------------------------------------------- servers' side

    def _publish(self, entry: _Server, state: ServerState) -> None:
        entry.state = state
        self._changed.set()
        self._changed = trio.Event()

    def _status(self, entry: _Server) -> McpServerStatus:
        config = entry.config
        connection = entry.connection
        return McpServerStatus(
            name=config.name,
            transport="stdio" if isinstance(config.transport, StdioTransport) else "http",
            state=entry.state,
            trusted=config.trusted,
            tools=entry.tools,
            restarts=entry.restarts,
            last_error=_for_operators(entry),
            pid=connection.pid if connection is not None else None,
            startup=config.startup,
            tool_refreshes=entry.tool_refreshes,
        )

    async def _run(self, entry: _Server) -> None:
        """The server's task: start, follow, back off, start again, until stopped."""
        try:
            await entry.wanted.wait()
            delay = BACKOFF_FIRST
            while not self._stopping.is_set():
                if entry.state != "idle":
                    entry.restarts += 1
                    self._metrics.restarts.labels(entry.config.name).inc()
                self._publish(entry, "starting")
                ready_at = await self._connect_and_follow(entry)
                if self._stopping.is_set() or entry.last_error == MISSING_SDK:
                    break  # retrying cannot install the SDK
                if ready_at is not None and trio.current_time() - ready_at >= HEALTHY_AFTER:
                    delay = BACKOFF_FIRST
                logger.warning("%s; restarting in %.1f s", _for_operators(entry), delay)
                entry.retry_at = trio.current_time() + delay
                entry.crashed = ready_at is not None
                entry.failed_starts = 0 if entry.crashed else entry.failed_starts + 1
                self._publish(entry, "backoff")
                with trio.move_on_after(delay):
                    await self._stopping.wait()
                delay = min(delay * 2, BACKOFF_MAX)
        finally:
            entry.connection = None
            self._publish(entry, "stopped")
            self._running -= 1
            if self._running == 0:
                self._all_stopped.set()

    async def _connect_and_follow(self, entry: _Server) -> float | None:
        """One connection's life; when it was ready (``None``: it never was)."""
        name = entry.config.name
        ready_at: float | None = None
        stderr = StderrTail()
        connection: McpConnection | None = None
        error: str | None = None
        try:
            async with connect(
                entry.config,
                start_timeout=self._start_timeout,
                transport=self._transport,
                stderr=stderr,
            ) as connection:
                try:
                    with trio.fail_after(self._start_timeout):
                        entry.tools = await connection.list_tools()
                except trio.TooSlowError:
                    raise McpUnavailable(
                        f"the MCP server {name} did not list its tools "
                        f"within {self._start_timeout:g} s"
                    ) from None
                entry.connection = connection
                entry.last_error = entry.last_stderr = None
                ready_at = trio.current_time()
                self._publish(entry, "ready")
                await self._follow(entry, connection)
            if not self._stopping.is_set():
                error = connection.failure or f"the MCP server {name} closed the connection"
        except Exception as exc:
            # A connection we failed ends in errors that only echo why (connection closed).
            error = (connection and connection.failure) or _reason(name, exc)
        finally:
            entry.connection = None
        if error is not None:
            # The block is left: the transport is closed and the stderr read to its end.
            entry.last_error, entry.last_stderr = error, stderr
        return ready_at

    async def _follow(self, entry: _Server, connection: McpConnection) -> None:
        """Keep the tool list current until the connection ends or the service stops."""
        async with trio.open_nursery() as nursery:

            async def on_stop() -> None:
                await self._stopping.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(on_stop)
            while await connection.wait_change():
                try:
                    with trio.fail_after(self._start_timeout):
                        tools = await connection.list_tools()
                except Exception as exc:  # keep the old list; a dead connection ends the loop
                    logger.warning(
                        "MCP server %s: re-listing tools failed: %r", entry.config.name, exc
                    )
                    continue
                entry.tools = tools
                entry.tool_refreshes += 1
                self._publish(entry, entry.state)
            nursery.cancel_scope.cancel()

    def _stop(self) -> None:
        self._stopping.set()
        for entry in self._servers.values():
            entry.wanted.set()  # an idle server's task wakes to see it is stopping

    async def _enforce_shutdown(self, scope: trio.CancelScope, limit: float) -> None:
        """Bound the shutdown: kill stdio children still alive near *limit*, cancel the rest."""
        # The SDK needs a moment after a kill to notice the exit and close the pipes.
        with trio.move_on_after(max(limit - 0.5, limit / 2)):
            await self._all_stopped.wait()
            return
        for entry in self._servers.values():
            connection = entry.connection
            if connection is not None and connection.pid is not None:
                _kill_group(connection.pid)
        scope.cancel()


def _kill_group(pid: int) -> None:
    """SIGKILL the process group of our child *pid* (the SDK starts each in its own session)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            parent = int(f.read().rpartition(")")[2].split()[1])
        if parent != os.getpid():
            return  # not our child any more: the pid may have been reused
        os.killpg(pid, signal.SIGKILL)
    except (OSError, ValueError, IndexError):
        pass


def _for_operators(entry: _Server) -> str | None:
    """The server's last error, then what it wrote to stderr before it (if anything)."""
    if entry.last_error is None or entry.last_stderr is None:
        return entry.last_error
    return entry.last_stderr.quoted(entry.last_error)


def _reason(name: str, exc: BaseException) -> str:
    """Why a connection attempt or connection ended, from an exception (or group)."""
    leaves: list[BaseException] = []
    stack = [exc]
    while stack:
        current = stack.pop()
        if isinstance(current, BaseExceptionGroup):
            stack.extend(reversed(current.exceptions))
        else:
            leaves.append(current)
    for leaf in leaves:
        if isinstance(leaf, McpUnavailable):
            return str(leaf)
    leaf = leaves[0] if leaves else exc
    return f"the MCP server {name} failed: {type(leaf).__name__}: {leaf}"
