"""The in-process fan-out: the writer copies each committed batch into subscribers' buffers.

The implementation of :class:`~sessions._fanout.Fanout` for a store whose
writer lives in this process (SQLite, memory). Why it keeps the guarantees of
the seam:

1. The writer publishes only after its backend's commit returned, and a read
   started after that sees the commit (SQLite: the reads share the writer's one
   connection, so they queue behind the transaction; memory: the batch applies
   without a checkpoint).
2. :meth:`LocalFanout.register` adds the buffer without a checkpoint, and every
   commit after it is published by the same writer task: it reaches the buffer.
3. The one writer commits and publishes batches in order, so each session's
   events arrive in seq order.
4. :meth:`LocalFanout.publish` uses ``send_nowait`` only; a full buffer cuts
   that subscriber off instead of blocking the writer (and every other
   session's appends with it).
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from ._models import Event


class _LocalFeed:
    """One subscriber's bounded live buffer (a :class:`~sessions._fanout.LiveFeed`)."""

    def __init__(self, fanout: LocalFanout, session_id: str, size: int) -> None:
        self.session_id = session_id
        self.send, self._receive = trio.open_memory_channel[Event](size)
        self.overflowed = False
        self.interrupted = False  # the writer is in this process: nothing to lose
        self._fanout = fanout

    async def receive(self) -> Sequence[Event]:
        return await receive_queued(self._receive)

    def close(self) -> None:
        self._fanout._drop(self)
        self._receive.close()


class LocalFanout:
    """Registry of live buffers, keyed by session (a :class:`~sessions._fanout.Fanout`)."""

    def __init__(self) -> None:
        self._live: dict[str, set[_LocalFeed]] = {}
        self.closed = False

    def register(self, session_id: str, after: int, size: int) -> _LocalFeed:
        # *after* is not needed: the subscription drops the few seqs at or below
        # its cursor that a commit racing the registration may repeat.
        del after
        feed = _LocalFeed(self, session_id, size)
        if self.closed:
            feed.send.close()
        else:
            self._live.setdefault(session_id, set()).add(feed)
        return feed

    def publish(self, session_id: str, events: Sequence[Event]) -> None:
        """Copy *events* into each subscriber's buffer; never blocks."""
        subscribers = self._live.get(session_id)
        if not subscribers:
            return
        for feed in list(subscribers):
            try:
                for event in events:
                    feed.send.send_nowait(event)
            except trio.WouldBlock:
                # Closing the send side lets the reader drain what it has and
                # then learn it fell behind.
                feed.overflowed = True
                self._drop(feed)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._drop(feed)

    def close(self) -> None:
        """End every subscription cleanly (after what they already buffered)."""
        self.closed = True
        for subscribers in self._live.values():
            for feed in subscribers:
                feed.send.close()
        self._live.clear()

    def _drop(self, feed: _LocalFeed) -> None:
        feed.send.close()
        subscribers = self._live.get(feed.session_id)
        if subscribers is not None:
            subscribers.discard(feed)
            if not subscribers:
                del self._live[feed.session_id]


async def receive_queued(receive: trio.MemoryReceiveChannel[Event]) -> list[Event]:
    """Wait for one event, then take every event already queued (a feed's ``receive``).

    Returns ``[]`` once the channel ended or was closed.
    """
    try:
        first = await receive.receive()
    except (trio.EndOfChannel, trio.ClosedResourceError):
        return []
    received = [first]
    while True:
        try:
            received.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return received
