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
from ._agent import serve_acp
from ._book import SessionBook, book_path
from ._embedded import open_embedded_link


async def run_acp(
    config: ServeConfig,
    *,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ACP on stdin/stdout with the runtime *config* describes, until end of input.

    Reports started once the store and the supervisor are open (a failure before
    that is a start-up failure: exit status 2). *shutdown* ends it like end of
    input.

    Raises:
        ConfigurationError: invalid configuration.
        StoreError: the database cannot be opened (e.g. in use by a server).

    Cancellation: as :func:`serve_acp`, then the runtime winds down and the store
    closes (shielded, bounded).
    """
    book = SessionBook(book_path(config))
    async with open_embedded_link(config) as link:
        task_status.started()
        receive = trio.lowlevel.FdStream(os.dup(0))
        send = trio.lowlevel.FdStream(os.dup(1))
        try:
            await serve_acp(receive, send, link, book=book, shutdown=shutdown)
        finally:
            with trio.CancelScope(shield=True):
                await receive.aclose()
