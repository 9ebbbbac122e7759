"""The PostgreSQL fan-out: live events across replicas through LISTEN/NOTIFY.

Several replicas (stores) may share one database, and a subscriber may be
served by any of them, not only by the one whose writer commits its session.
The writer's batch transaction sends one ``NOTIFY`` per session it wrote
(``_postgres_sql.commit_batch``: payload ``"<session_id> <first_seq>
<last_seq> <replica>"`` on a channel per schema), and :class:`PgFanout` keeps
one ``LISTEN`` connection per store. A notification only says "session *s*
has new events, up to *n*": the feeds of *s* on this replica then read storage
after their cursor (read-after-notify). Why this keeps the seam's guarantees
(:mod:`sessions._fanout`):

1. PostgreSQL delivers a notification after its transaction committed and
   became visible, and every delivered event comes from a storage read started
   after that (or from this replica's own writer, after its commit).
2. :meth:`PgFanout.run` is started (LISTEN in place) before the store is
   ready, and :meth:`PgFanout.register` adds the feed without a checkpoint:
   every commit after it is notified here, or, while the connection is down,
   read by the catch-up that follows the reconnection's LISTEN.
3. Each feed takes events only contiguous with the last one it queued; events
   beyond a gap (a local publish racing remote commits, a session whose lease
   moved between replicas) trigger a read from the feed's cursor instead.
4. Feeds are bounded memory channels; a read asks for at most one event more
   than the roomiest behind feed can hold, and a full feed ends ``overflowed``.
   Nothing waits for a subscriber.
5. After :meth:`PgFanout.close`, feeds end after what they hold and the
   listener stops.

This replica's own commits reach its subscribers through :meth:`publish`, in
the writer's task right after the commit (no round trip); their notifications
are ignored. Notifications that pile up while a read of the session is in
flight cost one more read, not one each. A lost listening connection may have
lost notifications, so it ends every feed as ``interrupted`` (each
subscription reads storage from its cursor again and registers anew: a client
sees no break), then reconnects with backoff.

Where a feed starts: the subscription registers with the cursor it had before
its last replayed page, so up to a page of events it already has may lie
between that cursor and the first event committed after registering. Reading
them again would cost a read and could overflow a small buffer, so a feed
handed nothing yet starts at that first event, which it can tell: the first
notification it sees names its batch's first seq (any later commit by another
replica comes after it, in commit order), and this replica's own first commit
is it if the replica held the session's lease, in one generation, all along
since the feed registered (nobody else can have written). Otherwise a read
from the cursor fills the gap.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence

import attrs
import psycopg
import trio

from . import _postgres_sql as pgsql
from ._errors import StoreError
from ._fanout_listen_pg import connect_listener
from ._fanout_local import receive_queued
from ._models import Event
from ._subscription import EventReader

log = logging.getLogger("agent_runtime.store")

_UNKNOWN = 2**63  # a target meaning "whatever storage has" (after a reconnection)


@attrs.define
class FanoutStats:
    """Counters of one replica's fan-out (for metrics)."""

    notifications: int = 0  # received on this schema's channel, own ones included
    own: int = 0  # this replica's own commits' (their events were published locally)
    ignored: int = 0  # of sessions nobody follows here, or malformed
    reads: int = 0  # storage reads made to feed subscribers
    batches: int = 0  # reads that delivered remote events, each one lag sample
    lag_sum: float = 0.0  # seconds from a notification's arrival to delivery
    lag_max: float = 0.0
    drops: int = 0  # listening connections lost


class _PgFeed:
    """One subscriber's bounded live buffer (a :class:`~sessions._fanout.LiveFeed`)."""

    def __init__(
        self, fanout: PgFanout, followed: _Followed, after: int, size: int, lease: int | None
    ) -> None:
        self.followed = followed
        self.size = size
        self.queued_to = after  # the last seq put in the buffer (or the starting cursor)
        self.target = after  # the last seq known to exist: a read is due while above
        self.fresh = True  # nothing seen since registering: where it starts is open
        self.lease = lease  # this replica's lease generation of the session then
        self.overflowed = False
        self.interrupted = False
        self.send, self._receive = trio.open_memory_channel[Event](size)
        self._fanout = fanout

    @property
    def room(self) -> int:
        return self.size - self.send.statistics().current_buffer_used

    def push(self, events: Sequence[Event]) -> bool:
        """Queue the events after ``queued_to``; False if they start beyond a gap."""
        for event in events:
            if event.seq <= self.queued_to:
                continue
            if event.seq != self.queued_to + 1:
                return False
            try:
                self.send.send_nowait(event)
            except trio.WouldBlock:
                self.overflowed = True
                self._fanout._drop(self)
                return True
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._fanout._drop(self)
                return True
            self.queued_to = event.seq
            self.fresh = False
        return True

    async def receive(self) -> Sequence[Event]:
        return await receive_queued(self._receive)

    def close(self) -> None:
        self._fanout._drop(self)
        self._receive.close()


@attrs.define(eq=False)
class _Followed:
    """The feeds of one session on this replica, and its read in flight."""

    session_id: str
    feeds: set[_PgFeed] = attrs.field(factory=set)
    reading: bool = False
    since: float | None = None  # arrival of the oldest notification not yet read


class PgFanout:
    """Local publishes plus a LISTEN connection (a :class:`~sessions._fanout.Fanout`).

    *replica* is this store's lease owner name (the notifications' last
    field); *reader* is the backend's read path; *lease* gives the generation
    of the session's lease this replica holds, if any. :meth:`run` must be
    started (``await nursery.start(fanout.run)``) before the store serves anyone.
    """

    def __init__(
        self,
        dsn: str,
        replica: str,
        reader: EventReader,
        lease: Callable[[str], int | None],
        *,
        page: int = 1000,
        backoff: tuple[float, float] = (0.05, 5.0),
    ) -> None:
        self._dsn = dsn
        self.replica = replica
        self._reader = reader
        self._lease = lease
        self._page = page
        self._backoff = backoff
        self._sessions: dict[str, _Followed] = {}
        self._nursery: trio.Nursery | None = None
        self._scope = trio.CancelScope()
        self._up = trio.Event()
        self.closed = False
        self.stats = FanoutStats()
        self.application_name = f"agent-runtime listener {replica}"[:63]
        self.listener_pid: int | None = None  # the listening connection's backend pid

    @property
    def listening(self) -> bool:
        """Whether the LISTEN connection is up (notifications are arriving)."""
        return self._up.is_set()

    async def wait_listening(self) -> None:
        """Wait until the LISTEN connection is up (after a reconnection, say)."""
        await self._up.wait()

    # -- the Fanout seam ---------------------------------------------------------------

    def register(self, session_id: str, after: int, size: int) -> _PgFeed:
        followed = self._sessions.get(session_id)
        if followed is None:
            followed = _Followed(session_id)
            if not self.closed:
                self._sessions[session_id] = followed
        feed = _PgFeed(self, followed, after, size, self._lease(session_id))
        if self.closed:
            feed.send.close()
        else:
            followed.feeds.add(feed)
        return feed

    def publish(self, session_id: str, events: Sequence[Event]) -> None:
        """This replica's own commit: queue it at once where it is contiguous."""
        followed = self._sessions.get(session_id)
        if followed is None or not events:
            return
        behind = False
        lease = self._lease(session_id)
        for feed in list(followed.feeds):
            if feed.fresh:
                feed.fresh = False
                if lease is not None and lease == feed.lease:
                    # Only this replica wrote since the feed registered: it starts here.
                    feed.queued_to = max(feed.queued_to, events[0].seq - 1)
            if not feed.push(events):
                feed.target = max(feed.target, events[-1].seq)
                behind = True
        if behind:
            self._schedule(followed)

    def close(self) -> None:
        """End every feed (after what each holds) and stop listening; idempotent."""
        self.closed = True
        self._end_all(interrupted=False)
        self._scope.cancel()

    # -- listening ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until :meth:`close`; started once the first LISTEN is in place.

        Raises:
            StorageUnavailable: the first connection failed (later ones are retried).

        Cancellation: stops listening and closes the connection; so does :meth:`close`.
        """
        conn = await self._connect()
        with self._scope:
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    task_status.started()
                    await self._listen(conn)
            finally:
                self._nursery = None
                self._up = trio.Event()
                self.listener_pid = None

    async def _listen(self, conn: pgsql.Connection) -> None:
        low, high = self._backoff
        while True:
            self.listener_pid = conn.info.backend_pid
            self._up.set()
            try:
                await self._receive(conn)
            finally:
                conn.close()
            self.stats.drops += 1
            self._up = trio.Event()
            self.listener_pid = None
            self._end_all(interrupted=True)  # notifications may have been lost meanwhile
            delay = low
            while True:
                await trio.sleep(delay * random.uniform(0.5, 1.0))
                try:
                    conn = await self._connect()
                    break
                except StoreError as exc:
                    log.warning("the event listener cannot reconnect: %s", exc)
                    delay = min(delay * 2, high)
            # Feeds registered while it was down may have missed commits (and no
            # notification tells where they start): read them all.
            for followed in list(self._sessions.values()):
                for feed in followed.feeds:
                    feed.target = _UNKNOWN
                    feed.fresh = False
                self._schedule(followed)

    async def _receive(self, conn: pgsql.Connection) -> None:
        """Hand notifications over until the connection fails (then return)."""
        fd = conn.fileno()
        while True:
            try:
                # Non-blocking: what the socket holds (first: what LISTEN's reply carried).
                notes = list(conn.notifies(timeout=0))
            except psycopg.Error as exc:
                log.warning("the event listener lost its connection: %s", exc)
                return
            for note in notes:
                self._notified(note.payload)
            await trio.lowlevel.wait_readable(fd)

    def _notified(self, payload: str) -> None:
        # Its arrival: trio's clock, as the delivery (_catch_up), so that the lag is
        # one clock's difference, and tests can run it under a mock clock.
        arrived = trio.current_time()
        self.stats.notifications += 1
        try:
            session_id, first, last, replica = payload.rsplit(" ", 3)
            first_seq, last_seq = int(first), int(last)
        except ValueError:
            log.warning("ignoring a malformed event notification %r", payload)
            self.stats.ignored += 1
            return
        if replica == self.replica:
            self.stats.own += 1
            return
        followed = self._sessions.get(session_id)
        if followed is None:
            self.stats.ignored += 1
            return
        behind = False
        for feed in followed.feeds:
            if feed.fresh:
                # The first commit notified since it registered: it starts there.
                feed.fresh = False
                feed.queued_to = max(feed.queued_to, first_seq - 1)
                feed.target = max(feed.target, feed.queued_to)
            if last_seq > feed.queued_to:
                feed.target = max(feed.target, last_seq)
                behind = True
        if behind:
            if followed.since is None:
                followed.since = arrived
            self._schedule(followed)

    async def _connect(self) -> pgsql.Connection:
        """A new connection LISTENing on this schema's channel (``_fanout_listen_pg.py``)."""
        return await connect_listener(self._dsn, self.application_name)

    # -- reading after a notification --------------------------------------------------

    def _schedule(self, followed: _Followed) -> None:
        # A read in flight re-checks every feed's target before it ends, with no
        # checkpoint in between: whatever was asked meanwhile is read next.
        if not followed.reading and self._nursery is not None and not self.closed:
            followed.reading = True
            self._nursery.start_soon(self._catch_up, followed)

    async def _catch_up(self, followed: _Followed) -> None:
        """Read storage for the feeds of one session until none is behind its target."""
        try:
            while not self.closed:
                behind = {f: f.target for f in followed.feeds if f.queued_to < f.target}
                if not behind:
                    # An earlier read delivered what the notification announced: its
                    # arrival time must not become the start of a later sample.
                    followed.since = None
                    return
                after = min(f.queued_to for f in behind)
                limit = min(self._page, max(f.room for f in behind) + 1)
                since, followed.since = followed.since, None
                try:
                    events = await self._reader.read_events(
                        followed.session_id, after=after, limit=limit
                    )
                except StoreError as exc:
                    # (Closing the fan-out cancels this task before the backend closes.)
                    # They cannot be fed: resuming from storage will say why.
                    log.warning("reading live events of %s failed: %s", followed.session_id, exc)
                    for feed in behind:
                        feed.overflowed = True
                        self._drop(feed)
                    return
                self.stats.reads += 1
                delivered = False
                for feed in list(followed.feeds):
                    before = feed.queued_to
                    feed.push(events)  # a feed beyond a gap stays behind: read again
                    delivered = delivered or feed.queued_to > before
                if delivered and since is not None:
                    lag = trio.current_time() - since
                    self.stats.batches += 1
                    self.stats.lag_sum += lag
                    self.stats.lag_max = max(self.stats.lag_max, lag)
                if len(events) < limit:
                    # Storage had nothing more: targets not raised meanwhile are met.
                    for feed, target in behind.items():
                        if feed.target == target:
                            feed.target = feed.queued_to
        finally:
            followed.reading = False

    def _end_all(self, *, interrupted: bool) -> None:
        sessions, self._sessions = self._sessions, {}
        for followed in sessions.values():
            for feed in followed.feeds:
                feed.interrupted = feed.interrupted or interrupted
                feed.send.close()
            followed.feeds.clear()  # a read in flight for it then finds no one behind

    def _drop(self, feed: _PgFeed) -> None:
        feed.send.close()
        followed = feed.followed
        followed.feeds.discard(feed)
        if not followed.feeds and self._sessions.get(followed.session_id) is followed:
            del self._sessions[followed.session_id]
