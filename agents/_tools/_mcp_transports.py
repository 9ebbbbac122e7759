"""The transports to an MCP server: the SDK's stdio and streamable-HTTP clients.

Opening the streams is a concern of its own (spawning the child under the
warden that stops it if we die, logging and keeping its stderr, finding its pid;
HTTP headers from the environment), apart
from the connection over them (:mod:`~agents._tools._mcp_client`), and the seam
a test replaces with in-memory streams. Like that module, it imports the SDK
only inside its functions, so ``import agents`` works without the ``mcp`` extra.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, TypeAlias

import trio

from .._core._mcp import HttpTransport, McpServerConfig, StdioTransport
from .._errors import McpUnavailable
from ._mcp_output import StderrTail, log_stderr

if TYPE_CHECKING:
    from mcp.client._transport import ReadStream, WriteStream
    from mcp.shared.message import SessionMessage

    #: A transport's streams, and the stdio child's pid (``None``: HTTP, or not found).
    _Streams: TypeAlias = tuple[
        ReadStream[SessionMessage | Exception], WriteStream[SessionMessage], int | None
    ]
    #: Opens the streams to the server of a config (stdio or HTTP; a test's in memory),
    #: keeping what a stdio server writes to stderr in the tail it is given.
    Transport: TypeAlias = Callable[
        [McpServerConfig, "StderrTail"], AbstractAsyncContextManager[_Streams]
    ]

#: How long a stopped stdio server's stderr may take to reach its end (a grandchild
#: holding the pipe open would otherwise hold up every restart and the shutdown).
_STDERR_SETTLE = 0.5
#: Run in place of a stdio server, so that it does not outlive us (see the module).
_WARDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_mcp_warden.py")


def open_transport(
    config: McpServerConfig, stderr: StderrTail
) -> AbstractAsyncContextManager[_Streams]:
    """The streams to the server of *config*: its stdio child, or streamable HTTP.

    A stdio child's stderr lines are kept in *stderr*; it is complete once the
    streams are closed.
    """
    if isinstance(config.transport, StdioTransport):
        return _stdio(config.name, config.transport, stderr)
    return _http(config.name, config.transport)


@asynccontextmanager
async def _stdio(name: str, transport: StdioTransport, tail: StderrTail) -> AsyncIterator[_Streams]:
    """The SDK's stdio client, with the child's stderr logged (never on our stdout) and kept."""
    from mcp.client.stdio import StdioServerParameters, stdio_client

    command, args = _warded(transport)
    params = StdioServerParameters(
        command=command,
        args=args,
        env=dict(transport.env),  # the SDK merges it over its minimal default environment
        cwd=transport.cwd,
    )
    read_fd, write_fd = os.pipe()
    stderr = trio.lowlevel.FdStream(read_fd)
    pipe_inode = os.fstat(write_fd).st_ino
    errlog = os.fdopen(write_fd, "w")
    try:
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:

            async def settle() -> None:
                # Reading the child's last words to their end before the logger is
                # cancelled: they say why it stopped. Our copy of the pipe would hold
                # it open (when the spawn failed, there is nothing to wait for).
                errlog.close()
                try:
                    with trio.move_on_after(_STDERR_SETTLE):
                        await tail.ended.wait()
                finally:
                    nursery.cancel_scope.cancel()

            # The stack exits first: the SDK stops the child, then the logger stops.
            stack.push_async_callback(settle)
            nursery.start_soon(log_stderr, name, stderr, tail)
            try:
                read, write = await stack.enter_async_context(stdio_client(params, errlog=errlog))
            except OSError as exc:
                raise McpUnavailable(
                    f"cannot start the MCP server {name}: {transport.command!r}: "
                    f"{exc.strerror or exc}"
                ) from exc
            # The child has its own copy; ours would hold the pipe open after it exits.
            errlog.close()
            yield read, write, _child_with_stderr(pipe_inode)
    finally:
        errlog.close()
        await stderr.aclose()


def unrunnable(transport: StdioTransport) -> str | None:
    """Why *transport*'s command cannot run, looked up as the child would, or ``None``."""
    command = transport.command
    if os.sep not in command:
        path = transport.env.get("PATH", os.environ.get("PATH", os.defpath))
        return None if shutil.which(command, path=path) is not None else "is not found"
    target = os.path.join(transport.cwd or os.getcwd(), command)
    if os.path.isdir(target):
        return "is a directory"  # X_OK on a directory means searchable, not runnable
    if not os.path.exists(target):
        return "is not found"
    return None if os.access(target, os.X_OK) else "is not executable"


def _warded(transport: StdioTransport) -> tuple[str, list[str]]:
    """The command line that starts *transport*'s server under the warden, if it can.

    The warden (:mod:`~agents._tools._mcp_warden`) stops the server when we die.
    Only on Linux, and only for a command that can run: it runs it with the same
    environment and directory, so it finds what the SDK would; one that cannot run
    is started directly, for the SDK's error to say why ("No such file or directory").
    """
    args = list(transport.args)
    if sys.platform != "linux" or not sys.executable or unrunnable(transport) is not None:
        return transport.command, args
    # -I -S: no site, no PYTHON* variables (the server's, not the warden's).
    return sys.executable, ["-I", "-S", _WARDEN, str(os.getpid()), "--", transport.command, *args]


def _child_with_stderr(pipe_inode: int) -> int | None:
    """The pid of our child whose stderr is the pipe we made (Linux ``/proc``; else ``None``).

    Looked up right after the spawn; while the child is unreaped its pid cannot be reused.
    """
    try:
        tasks = os.listdir("/proc/self/task")
        children: set[int] = set()
        for task in tasks:
            with open(f"/proc/self/task/{task}/children") as f:
                children.update(int(pid) for pid in f.read().split())
        for pid in children:
            try:
                if os.readlink(f"/proc/{pid}/fd/2") == f"pipe:[{pipe_inode}]":
                    return pid
            except OSError:
                continue
    except OSError:
        pass
    return None


@asynccontextmanager
async def _http(name: str, transport: HttpTransport) -> AsyncIterator[_Streams]:
    """The SDK's streamable HTTP client, with configured headers (secrets from the environment)."""
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    headers = dict(transport.headers)
    for header, variable in transport.headers_env.items():
        value = os.environ.get(variable)
        if value is None:
            raise McpUnavailable(
                f"the MCP server {name} needs the environment variable {variable} "
                f"(for the header {header}), which is not set"
            )
        headers[header] = value
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(transport.url, http_client=http) as (read, write):
            yield read, write, None
