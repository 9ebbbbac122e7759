"""The replay-then-live subscription: the handover every fan-out builds on.

A subscription first replays from storage, page by page, and registers its
live feed only once it has caught up, so a long replay cannot overflow the
feed. It then reads storage once more (anything committed before the
registration but after the last page is there) and from then on takes live
events, skipping every seq it already delivered. With the fan-out's guarantees
(:mod:`sessions._fanout`: nothing committed after registering is missed, per
session in seq order) that order is what makes "no gap, no duplicate" hold while
appends race with the replay, whichever fan-out implementation runs underneath.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Protocol

from ._errors import StorageUnavailable, StoreClosed, SubscriberTooSlow
from ._fanout import Fanout, LiveFeed
from ._models import Event


class EventReader(Protocol):
    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Event]: ...


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
        self._fetched = after  # last seq taken from storage or the live feed
        self._delivered = after  # last seq handed to the caller
        self._pending: deque[Event] = deque()
        self._live: LiveFeed | None = None
        self._caught_up = False
        self._gap = False  # the feed skipped a seq: cut off like a slow subscriber
        self._resyncing = False  # reading storage again after an interrupted feed
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
            self._live.close()
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
                        # Caught up as of that read: start the live feed, then
                        # read once more to cover what committed in between.
                        self._live = self._register()
                    elif self._live.overflowed:
                        # It overflowed while we were still reading storage,
                        # which lost nothing: start a fresh feed and re-read.
                        self._live.close()
                        self._live = self._register()
                    else:
                        self._caught_up = True
                        self._resyncing = False
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

    def _register(self) -> LiveFeed:
        return self._fanout.register(self._session_id, self._fetched, self._buffer)

    async def _read_page(self) -> list[Event] | None:
        if self._fanout.closed:
            return None
        try:
            return await self._reader.read_events(
                self._session_id, after=self._fetched, limit=self._page_size
            )
        except StoreClosed:
            return None
        except StorageUnavailable:
            if not self._resyncing:
                raise
            # The database that cut the feed off is not back yet: the caller
            # resumes from its cursor later, as after an overflow.
            raise SubscriberTooSlow(self._session_id, self._fetched) from None

    async def _receive_live(self) -> list[Event] | None:
        """Live events after ``_fetched``; None at the end of the stream."""
        assert self._live is not None
        received = await self._live.receive()
        if not received:
            if self._live.overflowed or self._gap:
                raise SubscriberTooSlow(self._session_id, self._fetched)
            if self._live.interrupted and not self._fanout.closed:
                # The fan-out lost notifications, not the subscriber its pace:
                # catch up from storage, then a new feed (the same handover).
                self._live.close()
                self._live = None
                self._caught_up = False
                self._resyncing = True
                return []
            return None
        fresh = [event for event in received if event.seq > self._fetched]
        if fresh and (
            fresh[0].seq != self._fetched + 1 or fresh[-1].seq != self._fetched + len(fresh)
        ):
            # Cannot happen with the register-then-reread order above and a
            # fan-out that keeps its guarantees (events above the cursor come
            # in seq order, each once). If it ever did, delivering a gap would
            # break the contract; asking the caller to resume from its cursor
            # repairs it from storage.
            self._gap = True
            self._live.close()
            raise SubscriberTooSlow(self._session_id, self._fetched)
        if fresh:
            self._fetched = fresh[-1].seq
        return fresh
