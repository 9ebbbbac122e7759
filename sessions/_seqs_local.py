"""The in-process seq allocator: the single writer's memory, ``MAX(seq)`` on a miss.

The group-commit writer (:mod:`sessions._writer`) remembers each session's last
seq from the batches it committed (an LRU of ``cache_size`` sessions) and hands
the ones a batch touches over as :attr:`Known.seqs <sessions._batch.Known>`.
A session missing there (never written since the store opened, or evicted) is
read from the transaction once: ``MAX(seq)``, 0 for an empty log. That is the
whole of lazy loading for seqs: opening a store reads no log.

Remembering is only sound while this writer is the only one of the database:
the SQLite store holds an exclusive file lock for as long as it is open
(:mod:`sessions._lock`), and the memory store's dictionaries belong to its one
writer. A store whose sessions can be written by another process must not use
this allocator (see :mod:`sessions._seqs`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class SeqReader(Protocol):
    """The read this allocator needs from a transaction on a miss."""

    def max_seq(self, session_id: str) -> int:
        """The highest committed (or written by this transaction) seq, 0 for none."""
        ...


class LocalSeqAllocator:
    """A :class:`~sessions._seqs.SeqAllocator` for a store with one writer process."""

    __slots__ = ("_known", "_last", "_reader")

    def __init__(self, known: Mapping[str, int], reader: SeqReader) -> None:
        self._known = known  # the writer's memory, as of the previous commit
        self._reader = reader
        self._last: dict[str, int] = {}

    def last_seq(self, session_id: str) -> int:
        last = self._last.get(session_id)
        if last is None:
            last = self._known.get(session_id)
        if last is None:
            last = self._reader.max_seq(session_id)
            # MAX(seq) is true whatever this batch does, so keep it (and let the
            # writer remember it) even if the append that needed it fails.
            self._last[session_id] = last
        return last

    def fence(self, session_id: str) -> None:
        """Nothing to check: this writer is the database's only one."""

    def advance(self, session_id: str, last_seq: int) -> None:
        self._last[session_id] = last_seq

    def last_seqs(self) -> dict[str, int]:
        return self._last
