"""``agent-runtime acp``'s body: the embedded runtime and the adapter on this process's stdio.

The CLI runs :func:`run_acp` inside its ``trio.run`` (it owns the signals, as for
``serve``). Standard input and output are opened as :class:`trio.lowlevel.FdStream`
on duplicates of fds 0 and 1, so the adapter's writer is the only thing that
writes to stdout (nothing else in the process prints; logs go to stderr) and
closing them leaves the process's own descriptors alone.
"""

from __future__ import annotations

import os

import trio

from .._config import ServeConfig
from .._runtime import runtime_config
from ._agent import serve_acp
from ._book import SessionBook, book_path
from ._embedded import open_embedded_link
from ._link import RuntimeLink


async def run_acp(
    config: ServeConfig,
    *,
    connect: tuple[str, str] | None = None,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ACP on stdin/stdout with the runtime *config* describes, until end of input.

    Reports started once the store and the supervisor are open (a failure before
    that is a start-up failure: exit status 2). *shutdown* ends it like end of
    input. With *connect* ``(url, token)`` it drives that running server instead
    (``_connected.py``; started once the server answered ``GET /v1/agents``), and
    only *config*'s ``tool_timeout`` is used.

    Raises:
        ConfigurationError: invalid configuration.
        StoreError: the database cannot be opened (e.g. in use by a server).
        LinkError: with *connect*: bad URL, server unreachable, token refused.

    Cancellation: as :func:`serve_acp`, then the runtime winds down and the store
    closes (shielded, bounded).
    """
    if connect is not None:
        # Imported here: the connected link's httpx and trio-websocket are not worth
        # an embedded adapter's start-up, which an editor waits for.
        from ._connected import open_connected_link

        url, token = connect
        tool_timeout = runtime_config(config).tool_timeout
        async with open_connected_link(url, token, tool_timeout=tool_timeout) as connected:
            task_status.started()
            await _serve_stdio(connected, SessionBook(), shutdown)
        return
    async with open_embedded_link(config) as link:
        task_status.started()
        await _serve_stdio(link, SessionBook(book_path(config)), shutdown)


async def _serve_stdio(link: RuntimeLink, book: SessionBook, shutdown: trio.Event | None) -> None:
    receive = trio.lowlevel.FdStream(os.dup(0))
    send = trio.lowlevel.FdStream(os.dup(1))
    try:
        await serve_acp(receive, send, link, book=book, shutdown=shutdown)
    finally:
        with trio.CancelScope(shield=True):
            await receive.aclose()
