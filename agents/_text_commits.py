"""A turn's streamed text, committed without waiting for each commit.

Streaming a reply commits one ``text.delta`` per chunk. Waiting for each commit
woke the turn twice per event (for the chunk, then for its commit); queued with
:meth:`~agents._session.LiveSession.commit_soon`, the writer folds each chunk
when it commits and the turn wakes only for the model. What waiting gave is
kept by other means:

- **Order and the fold**: the writer commits and folds in queue order, and
  every other write of the session waits for those folds under the lock.
- **A failure stops the text where it failed**: once a chunk is refused, every
  chunk queued behind it that no transaction has taken yet is withdrawn (so the
  log does not show text after a gap), and the failure is raised by the next
  :meth:`TextCommits.commit` or by :meth:`TextCommits.drain`, as the awaited
  commit raised it before. (Chunks already in the same transaction commit;
  what refuses one chunk alone (a deleted session, a lost lease) refuses the
  rest too, and a storage failure fails the whole transaction.)
- **Bounded**: by the store's queue.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from sessions import Committed, StoreError

from ._live_turn import Out
from ._session import LiveSession


@attrs.define(eq=False)
class TextCommits:
    """The text chunks of one model reply, queued for commit in order."""

    live: LiveSession
    turn_id: str
    _failure: StoreError | None = attrs.field(default=None, init=False)

    async def commit(self, outs: Sequence[Out]) -> None:
        """Queue *outs* after every chunk before them.

        Raises:
            StoreError: an earlier chunk was refused (nothing more is queued).
            StoreClosed: the store no longer takes appends.

        Cancellation: cancelled before it is queued, *outs* is not committed;
        chunks already queued commit whatever happens to the caller.
        """
        self._raise_failure()
        await self.live.commit_soon(
            outs, turn_id=self.turn_id, on_outcome=self._outcome, withdrawn=self._failed
        )

    async def drain(self) -> None:
        """Wait until every chunk queued is committed and folded.

        Raises:
            StoreError: a chunk was refused.

        Cancellation: safe; the queued chunks still commit.
        """
        await self.live.wait_folded()
        self._raise_failure()

    def _outcome(self, outcome: Committed | StoreError) -> None:
        # Called by the store's writer, in queue order; must not raise.
        if isinstance(outcome, StoreError) and self._failure is None:
            self._failure = outcome

    def _failed(self) -> bool:
        return self._failure is not None

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
