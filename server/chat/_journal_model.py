"""The undo journal's records: what a path was (:class:`Node`), what a call changed, per turn.

Plain frozen values shared by the journal's store (:mod:`._journal_store`, which
reads and writes them as ``index.json``) and the journal itself (:mod:`._journal`,
which records and reverts them); separate so neither holds the other's code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, TypeAlias

import attrs

NodeKind: TypeAlias = Literal["absent", "file", "dir", "link"]


@attrs.frozen
class Node:
    """What one path was: absent, a file (its bytes' hash and mode), a directory, a link."""

    kind: NodeKind
    digest: str = ""  # sha256 of a file's bytes, a link's target
    mode: int = 0  # a file's permission bits

    @property
    def same_as(self) -> tuple[str, str]:
        """What must match for "unchanged" (the mode does not count)."""
        return self.kind, self.digest


@attrs.frozen
class Change:
    """One path a call touched: before (restorable) and after (to detect later edits)."""

    path: str  # workspace-relative, POSIX
    before: Node
    after: Node


@attrs.frozen
class Entry:
    """One journaled tool call."""

    call_id: str
    tool: str
    changes: tuple[Change, ...]


@attrs.frozen
class Turn:
    turn_id: str
    session_id: str
    entries: tuple[Entry, ...]


@attrs.frozen
class Pending:
    """A call whose pre-image is recorded; :meth:`Journal.after` completes it."""

    turn_id: str
    call_id: str
    tool: str
    before: tuple[tuple[str, Node], ...]


@attrs.frozen
class Reverted:
    """What :meth:`Journal.undo` did: the turns and, per path, a line saying what."""

    turns: tuple[str, ...]
    lines: tuple[str, ...]


class UndoRefused(Exception):
    """Nothing was reverted; ``str()`` says why (naming the file)."""


def digests(turns: Iterable[Turn]) -> set[str]:
    """The digests of every pre-image *turns* reference (their blobs)."""
    return {c.before.digest for t in turns for e in t.entries for c in e.changes}


__all__ = [
    "Change",
    "Entry",
    "Node",
    "NodeKind",
    "Pending",
    "Reverted",
    "Turn",
    "UndoRefused",
    "digests",
]
