"""Fan-out of committed events to subscribers, and the replay-then-live subscription.

The writer publishes each committed batch synchronously into every subscriber's
bounded buffer; a full buffer marks that subscriber too slow instead of blocking
the writer. A subscription first replays from storage, page by page, and
registers its live buffer only once it has caught up, so a long replay cannot
overflow it. It then reads storage once more (anything committed before the
registration but after the last page is there) and from then on takes live
events, skipping every seq it already delivered. That ordering is what makes
"no gap, no duplicate" hold while appends race with the replay.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Protocol

import trio

from ._errors import StoreClosed, SubscriberTooSlow
from ._models import Event


class EventReader(Protocol):
    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Event]: ...


class _Live:
    """One subscriber's bounded live buffer."""

    def __init__(self, session_id: str, size: int) -> None:
        self.session_id = session_id
        self.send, self.receive = trio.open_memory_channel[Event](size)
        self.too_slow = False


class Fanout:
    """Registry of live buffers, keyed by session."""

    def __init__(self) -> None:
        self._live: dict[str, set[_Live]] = {}
        self.closed = False

    def register(self, session_id: str, size: int) -> _Live:
        live = _Live(session_id, size)
        if self.closed:
            live.send.close()
        else:
            self._live.setdefault(session_id, set()).add(live)
        return live

    def unregister(self, live: _Live) -> None:
        subscribers = self._live.get(live.session_id)
        if subscribers is not None:
            subscribers.discard(live)
            if not subscribers:
                del self._live[live.session_id]
        live.send.close()
        live.receive.close()

    def publish(self, session_id: str, events: Sequence[Event]) -> None:
        """Copy *events* into each subscriber's buffer; never blocks."""
        subscribers = self._live.get(session_id)
        if not subscribers:
            return
        for live in list(subscribers):
            try:
                for event in events:
                    live.send.send_nowait(event)
            except trio.WouldBlock:
                # Closing the send side lets the reader drain what it has and
                # then learn it fell behind.
                live.too_slow = True
                self._drop(live)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._drop(live)

    def close(self) -> None:
        """End every subscription cleanly (after what they already buffered)."""
        self.closed = True
        for subscribers in self._live.values():
            for live in subscribers:
                live.send.close()
        self._live.clear()

    def _drop(self, live: _Live) -> None:
        live.send.close()
        subscribers = self._live.get(live.session_id)
        if subscribers is not None:
            subscribers.discard(live)
            if not subscribers:
                del self._live[live.session_id]


class ReplaySubscription:
    """A :class:`~sessions.Subscription`: replay after a cursor, then the live tail."""

    def __init__(
        self,
        session_id: str,
        after: int,
        buffer: int,
        reader: EventReader,
        fanout: Fanout,
        *,
        page_size: int = 500,
    ) -> None:
        if buffer < 1 or page_size < 1:
            raise ValueError("buffer and page_size must be at least 1")
        self._session_id = session_id
        self._buffer = buffer
        self._reader = reader
        self._fanout = fanout
        self._page_size = page_size
        self._fetched = after  # last seq taken from storage or the live buffer
        self._delivered = after  # last seq handed to the caller
        self._pending: deque[Event] = deque()
        self._live: _Live | None = None
        self._caught_up = False
        self._ended = False

    @property
    def last_seq(self) -> int:
        """The seq of the last event delivered (the cursor to resume from)."""
        return self._delivered

    def __aiter__(self) -> ReplaySubscription:
        return self

    async def __anext__(self) -> Event:
        """The next event.

        Raises:
            StopAsyncIteration: the store closed.
            SubscriberTooSlow: the live buffer overflowed; resume from ``last_seq``.

        Cancellation: safe; no event is lost, the next call continues from
        ``last_seq``.
        """
        if not self._pending:
            self._pending.extend(await self._fetch())
            if not self._pending:
                raise StopAsyncIteration
        event = self._pending.popleft()
        self._delivered = event.seq
        return event

    async def receive_batch(self) -> Sequence[Event]:
        """Wait for at least one event, then return every event already available.

        Returns an empty sequence once the subscription ended (store closed).

        Raises:
            SubscriberTooSlow: the live buffer overflowed; resume from ``last_seq``.

        Cancellation: safe; no event is lost, the next call continues from
        ``last_seq``.
        """
        if self._pending:
            batch = list(self._pending)
            self._pending.clear()
        else:
            batch = await self._fetch()
        if batch:
            self._delivered = batch[-1].seq
        return batch

    def close(self) -> None:
        if self._live is not None:
            self._fanout.unregister(self._live)
        self._ended = True

    async def _fetch(self) -> list[Event]:
        # Every path either returns events with seqs fetched+1, fetched+2, ...
        # (and advances _fetched), or returns [] for the end, or raises.
        while not self._ended:
            if not self._caught_up:
                page = await self._read_page()
                if page is None:
                    break
                if len(page) < self._page_size:
                    if self._live is None:
                        # Caught up as of that read: start buffering live events,
                        # then read once more to cover what committed in between.
                        self._live = self._fanout.register(self._session_id, self._buffer)
                    elif self._live.too_slow:
                        # It overflowed while we were still reading storage,
                        # which lost nothing: start a fresh buffer and re-read.
                        self._fanout.unregister(self._live)
                        self._live = self._fanout.register(self._session_id, self._buffer)
                    else:
                        self._caught_up = True
                if page:
                    self._fetched = page[-1].seq
                    return page
                continue
            events = await self._receive_live()
            if events is None:
                break
            if events:
                return events
        self._ended = True
        return []

    async def _read_page(self) -> list[Event] | None:
        if self._fanout.closed:
            return None
        try:
            return await self._reader.read_events(
                self._session_id, after=self._fetched, limit=self._page_size
            )
        except StoreClosed:
            return None

    async def _receive_live(self) -> list[Event] | None:
        """Live events after ``_fetched``; None at the end of the stream."""
        assert self._live is not None
        try:
            first = await self._live.receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self._live.too_slow:
                raise SubscriberTooSlow(self._session_id, self._fetched) from None
            return None
        received = [first]
        while True:
            try:
                received.append(self._live.receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        fresh = [event for event in received if event.seq > self._fetched]
        if fresh and fresh[0].seq != self._fetched + 1:
            # Cannot happen with the register-then-reread order above. If it
            # ever did, delivering a gap would break the contract; asking the
            # caller to resume from its cursor repairs it from storage.
            self._live.too_slow = True
            self._fanout.unregister(self._live)
            raise SubscriberTooSlow(self._session_id, self._fetched)
        if fresh:
            self._fetched = fresh[-1].seq
        return fresh
