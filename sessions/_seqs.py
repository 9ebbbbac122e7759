"""The seq-allocation seam: what decides the seq of each new event inside a batch.

SPEC §2 and §3.3: each session has one gap-free log, ``seq = 1, 2, 3, …``,
assigned when the event is committed. :func:`~sessions._batch.apply_batch`
never computes a seq from storage itself; it asks the batch's
:class:`SeqAllocator` which seq a session's next event follows, and tells it
when an append's events were written. A backend chooses the allocator when it
opens its batch transaction, because only the backend knows how writers of a
session are kept apart:

- :class:`~sessions._seqs_local.LocalSeqAllocator` (SQLite, memory): the one
  writer of the database remembers last seqs between batches and reads
  ``MAX(seq)`` inside the transaction on a miss. Valid only because nothing else
  writes the database (the SQLite store's file lock).
- :class:`~sessions._seqs_fenced.FencedSeqAllocator` (PostgreSQL, several
  replicas): locks the session's lease row inside the transaction, checks the
  fencing token (this replica, its generation) there, and reads ``MAX(seq)``
  under that lock, so a replica that lost the lease cannot commit.

What every implementation must guarantee (``tests/sessions/test_seam_seqs.py``):

1. ``last_seq(s)`` is the seq of *s*'s last event as this transaction will
   commit it: the last committed seq (0 for none) or the last seq an earlier
   append of this batch was given (:meth:`advance`). The next event is
   ``last_seq(s) + 1``, so seqs are contiguous within and across batches.
2. It stays true until the transaction commits: no other writer can commit an
   event of *s* in between. (A duplicate seq would also break the
   ``(session_id, seq)`` primary key, but a store must not rely on that: the
   key error would fail the append as :class:`~sessions.Unstorable`.)
3. Only appends that succeed use seqs. :meth:`advance` is called after the
   append's savepoint was released; a failed append never calls it, and a batch
   that rolls back throws its allocator away (one allocator per transaction).
4. ``last_seq`` may raise a :class:`~sessions.StoreError` (a lease found lost,
   say): the append that asked fails alone, the rest of the batch commits. Any
   other exception fails the whole transaction (the writer then retries its
   appends one by one).

It is synchronous and runs wherever the transaction runs (SQLite: aiosqlite's
worker thread), like the rest of the batch.
"""

from __future__ import annotations

from typing import Protocol


class SeqAllocator(Protocol):
    """Decides the seqs of new events in ONE batch transaction (then discarded)."""

    def last_seq(self, session_id: str) -> int:
        """The seq *session_id*'s next event follows (0 for an empty log).

        The first call for a session may read the transaction (and, in a
        networked store, lock the session's row and check its fencing token).

        Raises:
            StoreError: this session cannot be written by this transaction; the
                append that asked fails alone.
        """
        ...

    def fence(self, session_id: str) -> None:
        """Called first for every append of *session_id* (events or not).

        A store with several writers checks here that this transaction may
        write the session at all (its lease), so that no part of an append
        (a turn row, an approval, a command record) is written by a replica
        that lost the session. One writer per database: nothing to do.

        Raises:
            StoreError: this session cannot be written by this transaction; the
                append fails alone.
        """
        ...

    def advance(self, session_id: str, last_seq: int) -> None:
        """An append of this batch wrote *session_id*'s events up to *last_seq*."""
        ...

    def last_seqs(self) -> dict[str, int]:
        """Each session's last seq as this transaction commits it, for those it read
        or advanced: what the writer may remember once the transaction committed."""
        ...
