"""The fan-out seam: committed events, from the writer to live subscribers.

A store's writer hands every committed batch to a :class:`Publisher`; a
subscription (:class:`~sessions._subscription.ReplaySubscription`) replays
storage and then takes the live tail from a :class:`LiveFeed` that it
registered with the :class:`Fanout`. Implementations:

- :class:`~sessions._fanout_local.LocalFanout` (SQLite, memory): publishing
  copies the events into each registered subscriber's bounded buffer, in the
  writer's task.
- :class:`~sessions._fanout_pg.PgFanout` (PostgreSQL, several replicas): the
  committing transaction sends one ``NOTIFY`` per session (delivered at commit,
  in commit order); this replica's own commits are published locally as above,
  and each replica's one ``LISTEN`` connection wakes the feeds of sessions
  another replica wrote, which read them from storage after their cursor
  (read-after-notify), so a lost or coalesced notification costs latency,
  never an event.

The handover (replay, then live) is the subscription's, the same for every
implementation: replay pages until a short page; register the feed; read
storage once more; from then on take the feed's events, dropping seqs already
delivered. It gives "no gap, no duplicate" (SPEC §3.3.3) if the fan-out
guarantees (``tests/sessions/test_seam_fanout.py`` checks each):

1. **Committed only, and visible first.** An event reaches a feed only after
   its commit, and after a read that starts later would return it. (Nothing
   uncommitted is ever shown: a failed or duplicate append publishes nothing.)
2. **Nothing missed after registering.** Once :meth:`Fanout.register` has
   returned, every event of that session committed afterwards reaches the feed
   (what committed before is what the read after registering returns).
3. **Per session, in seq order, contiguous.** A feed may repeat events at or
   below the cursor (the subscription drops them), but never skips one above
   it; if it ever did, the subscription ends with
   :class:`~sessions.SubscriberTooSlow`, and resuming from storage repairs it.
4. **Bounded.** A subscriber that falls more than ``size`` events behind is cut
   off: its feed delivers what it holds, then ends with ``overflowed`` set (the
   subscription raises :class:`~sessions.SubscriberTooSlow` with its last seq).
   Publishing never waits for a subscriber. A feed the fan-out itself could no
   longer keep whole ends with ``interrupted`` set instead: the subscription
   reads storage again (and only if that fails raises ``SubscriberTooSlow``).
5. **Closing.** After :meth:`Fanout.close` publishing is harmless (a no-op),
   feeds end once they delivered what they hold, and a feed registered later
   ends at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ._models import Event


class Publisher(Protocol):
    """The writer's side of the fan-out."""

    def publish(self, session_id: str, events: Sequence[Event]) -> None:
        """Hand *events* (one committed append, in seq order) to subscribers.

        Called right after the commit, in the writer's task; must never block or
        raise. Only committed, non-duplicate events are published.
        """
        ...


class LiveFeed(Protocol):
    """One subscriber's live events of one session (see the guarantees above)."""

    @property
    def overflowed(self) -> bool:
        """True once the subscriber fell too far behind (the feed then ends)."""
        ...

    @property
    def interrupted(self) -> bool:
        """True once the fan-out lost its own source (PostgreSQL: the ``LISTEN``
        connection dropped) and ended the feed: events may have been missed, so
        the subscription catches up from storage and registers a new feed."""
        ...

    async def receive(self) -> Sequence[Event]:
        """Wait for at least one event, then return every event already at hand.

        Returns an empty sequence once the feed ended: the fan-out closed, the
        feed was closed, or it ``overflowed``.

        Cancellation: safe; nothing is consumed by a cancelled call.
        """
        ...

    def close(self) -> None:
        """Stop delivering to this feed and free it; idempotent."""
        ...


class Fanout(Publisher, Protocol):
    """Committed events from the writer to every live subscriber of a session."""

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (the store is shutting down)."""
        ...

    def register(self, session_id: str, after: int, size: int) -> LiveFeed:
        """A feed of *session_id*'s events committed from now on.

        *after* is the subscriber's cursor: a feed that reads storage itself (on
        a notification) starts reading after it; one that is handed events may
        ignore it. *size* bounds how many events the feed holds undelivered.
        Must not checkpoint: it is registered when it returns.
        """
        ...

    def close(self) -> None:
        """End every feed (after what each holds); later publishing is a no-op."""
        ...
