"""A turn's streamed text, committed without waiting for each commit.

Streaming a reply commits one ``text.delta`` per chunk. Waiting for each commit
woke the turn twice per event (for the chunk, then for its commit). With
:meth:`~agents._session.LiveSession.commit_soon` the writer folds each chunk
when it commits, and a paced stream's turn wakes only for the model. What
waiting gave is kept by other means:

- **Order and the fold**: the writer commits and folds in queue order, and
  every other write of the session waits for those folds under the lock.
- **Coalescing under load**: one chunk is in flight at most
  (:meth:`TextCommits.ready`). While it commits, what the model sends next piles
  up in the turn's channel and goes out as one event. A burst, or a server that
  cannot keep up, gets fewer events per token, as when every commit was waited for.
- **A failure stops the text where it failed**: nothing is queued behind the
  chunk in flight, so a refused chunk is the turn's last text, and its error is
  raised by the next :meth:`TextCommits.commit` or by :meth:`TextCommits.drain`,
  as the awaited commit raised it before.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from sessions import Committed, StoreError

from ._live_turn import Out
from ._session import LiveSession


@attrs.define(eq=False)
class TextCommits:
    """The text chunks of one model reply, committed in order, one in flight at most."""

    live: LiveSession
    turn_id: str
    _failure: StoreError | None = attrs.field(default=None, init=False)

    async def ready(self) -> None:
        """Wait until the chunk in flight is committed and folded (no wait if none is).

        Call it before gathering the next chunk, so that what arrives meanwhile
        joins that chunk.

        Cancellation: safe; the chunk in flight still commits.
        """
        await self.live.wait_folded()  # no schedule point when nothing is in flight

    async def commit(self, outs: Sequence[Out]) -> None:
        """Queue *outs*; the caller waits with :meth:`ready` before the next.

        Raises:
            StoreError: an earlier chunk was refused (nothing more is queued).
            StoreClosed: the store no longer takes appends.

        Cancellation: cancelled before it is queued, *outs* is not committed;
        once queued, it commits whatever happens to the caller.
        """
        self._raise_failure()
        await self.live.commit_soon(outs, turn_id=self.turn_id, on_outcome=self._outcome)

    async def drain(self) -> None:
        """Wait until the chunk in flight is committed and folded.

        Raises:
            StoreError: a chunk was refused.

        Cancellation: safe; the chunk in flight still commits.
        """
        await self.ready()
        self._raise_failure()

    def _outcome(self, outcome: Committed | StoreError) -> None:
        # Called by the store's writer, in queue order; must not raise.
        if isinstance(outcome, StoreError) and self._failure is None:
            self._failure = outcome

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
