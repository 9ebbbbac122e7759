"""What the PostgreSQL fan-out's notification lag measures, under a mock clock.

The lag (``PgFanout.stats``: ``batches``, ``lag_sum``, ``lag_max``; the
``agent_runtime_notification_lag_seconds`` metric) is, per read that hands
remote events to this replica's subscribers, the time from the arrival of the
oldest notification that read serves to the hand-over. It must never count
from a notification an earlier read already served: that made the metric's
mean 127-250 ms while clients saw p99 38-47 ms from commit to receipt (B10).

No database: notifications are handed to the fan-out as its listener does,
and its reads go to a fake storage that answers when the test says (after the
clock moved) with what the test says is visible, so each interleaving is exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from sessions import Event
from sessions._fanout_pg import PgFanout, _PgFeed

SESSION = "ses_lag"


class Storage:
    """One session's log; each read waits for :meth:`answer`."""

    def __init__(self) -> None:
        self.log: list[Event] = []
        self.reads = 0
        self._waiting: list[tuple[trio.Event, list[int]]] = []

    def commit(self, count: int) -> str:
        """Commit *count* events; the notification another replica's writer sends."""
        first = len(self.log) + 1
        self.log += [Event(SESSION, seq, "x", 0.0, {}) for seq in range(first, first + count)]
        return f"{SESSION} {first} {len(self.log)} elsewhere"

    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Event]:
        assert session_id == SESSION
        self.reads += 1
        gate, visible = trio.Event(), [len(self.log)]
        self._waiting.append((gate, visible))
        await gate.wait()
        found = [e for e in self.log if after < e.seq <= visible[0]]
        return found if limit is None else found[:limit]

    async def answer(self, *, upto: int | None = None) -> None:
        """Let the one read in flight return: what was committed by now, or up to
        seq *upto* (its snapshot was taken before later commits)."""
        await trio.testing.wait_all_tasks_blocked()
        assert len(self._waiting) == 1, f"{len(self._waiting)} reads in flight, not one"
        gate, visible = self._waiting.pop()
        visible[0] = len(self.log) if upto is None else upto
        gate.set()
        await trio.testing.wait_all_tasks_blocked()

    async def idle(self) -> None:
        await trio.testing.wait_all_tasks_blocked()
        assert not self._waiting, "a read is in flight"


@asynccontextmanager
async def following(
    storage: Storage, *, page: int = 1000
) -> AsyncIterator[tuple[PgFanout, _PgFeed]]:
    """A fan-out with one subscriber of the session, its reads running."""
    fanout = PgFanout("postgresql://unused", "here", storage, lambda _: None, page=page)
    async with trio.open_nursery() as nursery:
        fanout._nursery = nursery  # what run() sets once listening (no connection here)
        feed = fanout.register(SESSION, after=0, size=100)
        yield fanout, feed
        nursery.cancel_scope.cancel()


async def notify(fanout: PgFanout, payload: str) -> None:
    """A notification arrives now; the reads it starts run up to their storage call."""
    fanout._notified(payload)
    await trio.testing.wait_all_tasks_blocked()


def queued(feed: _PgFeed) -> int:
    return feed.queued_to


def assert_samples(fanout: PgFanout, count: int, total: float, most: float) -> None:
    """The lag samples so far: how many, their sum and the largest (seconds)."""
    stats = fanout.stats
    assert (stats.batches, stats.lag_sum, stats.lag_max) == pytest.approx((count, total, most))


MS = 0.001


async def test_a_read_that_delivers_measures_from_the_notifications_arrival(
    mock_clock: trio.testing.MockClock,
) -> None:
    storage = Storage()
    async with following(storage) as (fanout, feed):
        mock_clock.jump(1.0)  # the feed registered a while before anything happens
        await notify(fanout, storage.commit(2))
        mock_clock.jump(4 * MS)
        await storage.answer()
        assert queued(feed) == 2
        assert_samples(fanout, 1, 4 * MS, 4 * MS)
        await storage.idle()
        assert storage.reads == 1


async def test_a_notification_served_by_the_read_in_flight_is_not_counted_from_later(
    mock_clock: trio.testing.MockClock,
) -> None:
    storage = Storage()
    async with following(storage) as (fanout, feed):
        await notify(fanout, storage.commit(1))
        mock_clock.jump(2 * MS)
        # Another commit lands before the read's snapshot; its notification
        # arrives while the read is in flight, which delivers its events too.
        await notify(fanout, storage.commit(1))
        mock_clock.jump(2 * MS)
        await storage.answer()
        assert queued(feed) == 2
        assert_samples(fanout, 1, 4 * MS, 4 * MS)
        await storage.idle()  # nothing is behind: no second read
        assert storage.reads == 1
        # Much later, the next commit: its sample starts at its own notification.
        mock_clock.jump(3.0)
        await notify(fanout, storage.commit(1))
        mock_clock.jump(5 * MS)
        await storage.answer()
        assert queued(feed) == 3
        assert_samples(fanout, 2, 9 * MS, 5 * MS)


async def test_notifications_coalesced_into_one_read_count_from_the_oldest(
    mock_clock: trio.testing.MockClock,
) -> None:
    storage = Storage()
    async with following(storage) as (fanout, feed):
        await notify(fanout, storage.commit(1))  # t = 0: the first read starts
        mock_clock.jump(1 * MS)
        await notify(fanout, storage.commit(1))  # t = 1 ms, during the read
        mock_clock.jump(1 * MS)
        await notify(fanout, storage.commit(1))  # t = 2 ms, during the read
        mock_clock.jump(1 * MS)
        await storage.answer(upto=1)  # its snapshot predates the later commits
        assert queued(feed) == 1
        assert_samples(fanout, 1, 3 * MS, 3 * MS)
        mock_clock.jump(2 * MS)
        await storage.answer()  # one read for both later notifications
        assert queued(feed) == 3
        assert_samples(fanout, 2, 7 * MS, 4 * MS)
        await storage.idle()
        assert storage.reads == 2


async def test_a_missed_notification_is_healed_by_the_next_read_from_the_cursor(
    mock_clock: trio.testing.MockClock,
) -> None:
    storage = Storage()
    async with following(storage) as (fanout, feed):
        await notify(fanout, storage.commit(1))
        mock_clock.jump(1 * MS)
        await storage.answer()
        assert queued(feed) == 1
        mock_clock.jump(1.0)
        storage.commit(2)  # its notification never arrives
        mock_clock.jump(1.0)
        await notify(fanout, storage.commit(1))
        mock_clock.jump(2 * MS)
        await storage.answer()  # read from the cursor: the missed events too
        assert queued(feed) == 4
        # Counted from the notification that led to the read, the only one known.
        assert_samples(fanout, 2, 3 * MS, 2 * MS)
        await storage.idle()
        assert storage.reads == 2
