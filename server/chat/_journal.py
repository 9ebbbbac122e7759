"""Checkpoints of the files the agent changes, so ``/undo`` can put them back (and ``/diff``).

Before the client runs a file-changing tool (``write_file``, ``apply_diff``,
``create_directory``, ``delete_file``, ``move_file``) it records the *pre-image*
of every path the call can touch: a file's bytes and mode, a directory, a
symlink's target, or absence (directories ``write_file``/``move_file`` create on
the way count too; a moved directory counts with everything in it). After the call
it records the *post-image* (a hash, not the bytes). Entries are keyed by turn id
and call id, under ``<workspace>/.agent-runtime/journal/``: ``index.json`` and the
pre-image bytes in ``blobs/`` (content-addressed, so an unchanged file costs once).

:meth:`Journal.undo` reverts the newest turns of this session, newest call first.
It first checks, for every path, that what is there now is what the agent left
(the post-image); if anything differs (someone edited the file since, or put a
file into a directory the agent created) it refuses, names the path and changes
nothing. The journal is bounded (:data:`MAX_JOURNAL_BYTES` of pre-images): past
it, the oldest turns are dropped first (they can no longer be undone), which may
be the current turn itself when one turn alone exceeds the bound.

All methods do blocking file I/O: call them in a worker thread. How the journal is
stored (the index and blobs, the lock shared with other clients, validating an
index that is not trusted, state folders that turn journaling off) is
:mod:`._journal_store`; the records themselves are :mod:`._journal_model`. Before
changing anything, ``/undo`` checks that no directory on each path is a symlink and
that every needed blob exists with its sha256; it checks the path again right
before each change. Notes collect in :meth:`Journal.take_notes` (:func:`journaled`
hands them to its *note*).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final, TypeVar

import attrs
import trio

from sessions import JSONObject

from ._command import ToolFailure
from ._journal_model import (
    Change,
    Entry,
    Node,
    NodeKind,
    Pending,
    Reverted,
    Turn,
    UndoRefused,
    digests,
)
from ._journal_store import JOURNAL_DIR, MAX_JOURNAL_BYTES, JournalStore, read_nofollow
from ._paths import ConfinedRoot, in_state_dir

JOURNALED_TOOLS: Final = frozenset(
    {"write_file", "apply_diff", "create_directory", "delete_file", "move_file"}
)

_T = TypeVar("_T")


class Journal(JournalStore):
    """The checkpoints of one workspace, for the session *session_id*.

    Recording, reading and undoing; the directory itself is :class:`JournalStore`'s.
    """

    # -- recording -------------------------------------------------------------------

    def before(self, turn_id: str, call_id: str, tool: str, args: JSONObject) -> Pending | None:
        """Record the pre-image of what *tool* with *args* may change; ``None``: nothing to.

        A call whose paths are invalid is not journaled (the tool refuses it anyway),
        nor is any call while journaling is off.

        Raises:
            OSError: the pre-image could not be read or stored (see :func:`journaled`).
        """
        if tool not in JOURNALED_TOOLS:
            return None
        try:
            paths = touched_paths(self.workspace, tool, args)
        except (ToolFailure, KeyError):
            return None
        rels = [self._rel(p) for p in paths]
        if any(in_state_dir(rel) for rel in rels):
            return None  # the tools refuse the state folder
        with self._lock:
            if not self._state_dirs(create=True):
                return None
            before = tuple((rel, self._snapshot(self._root(rel), keep=True)) for rel in rels)
        return Pending(turn_id, call_id, tool, before)

    def after(self, pending: Pending) -> None:
        """Record the post-image of *pending*'s paths and store the entry (bounding the size).

        Raises:
            OSError: the post-image could not be read or the index not written.
        """
        with self._lock:
            if not self._state_dirs(create=True):
                return
            changes = tuple(
                Change(rel, node, after)
                for rel, node in pending.before
                if (after := self._snapshot(self._root(rel), keep=False)).same_as != node.same_as
            )
            if not changes:
                return
            with self._exclusive():
                turns = self._load()  # re-read under the lock: other clients' entries stay
                previous = digests(turns)
                entry = Entry(pending.call_id, pending.tool, changes)
                for index, turn in enumerate(turns):
                    if turn.turn_id == pending.turn_id:
                        turns[index] = attrs.evolve(turn, entries=(*turn.entries, entry))
                        break
                else:
                    turns.append(Turn(pending.turn_id, self.session_id, (entry,)))
                while turns and self._size(turns) > self.max_bytes:
                    turns.pop(0)  # the oldest turn first
                self._save(turns, previous)

    # -- reading ---------------------------------------------------------------------

    def turns(self) -> list[Turn]:
        """This session's journaled turns, oldest first (none while journaling is off)."""
        with self._lock:
            if not self._state_dirs(create=False):
                return []
            return [t for t in self._load() if t.session_id == self.session_id]

    def blob(self, node: Node) -> bytes:
        """The stored bytes of *node* (a file's, a link target's).

        Raises:
            OSError: the blob is missing, or damaged (its sha256 is not *node*'s digest).
        """
        if not self._state_dirs(create=False):
            raise OSError(f"the undo journal is off: {self.off}")
        return self._blob(node.digest)

    def originals(self) -> dict[str, Node]:
        """Every path this session's agent changed, with what it was before the first change."""
        first: dict[str, Node] = {}
        for turn in self.turns():
            for entry in turn.entries:
                for change in entry.changes:
                    first.setdefault(change.path, change.before)
        return first

    def current(self, rel: str) -> Node:
        """What *rel* is now.

        Raises:
            OSError: it leads through a symlink (or cannot be read).
        """
        with self._lock:
            return self._snapshot(self._confined(rel), keep=False)

    def current_bytes(self, rel: str) -> bytes:
        """The bytes of the file *rel* now, never through a symlink.

        Raises:
            OSError: missing, unreadable, a symlink, or through one.
        """
        return read_nofollow(self._confined(rel))

    # -- undo ------------------------------------------------------------------------

    def undo(self, count: int = 1) -> Reverted:
        """Revert this session's newest *count* turns, newest call first.

        Raises:
            UndoRefused: nothing to undo, journaling is off, a path changed since the
                agent wrote it or leads through a symlink, or a stored copy is missing
                or damaged (nothing is reverted then).
            OSError: reverting failed part-way (the message names the path).
        """
        with self._lock:
            if not self._state_dirs(create=True):
                raise UndoRefused(f"the undo journal is off for this run: {self.off}")
            with self._exclusive():
                turns = self._load()
                mine = [t for t in turns if t.session_id == self.session_id]
                if not mine:
                    raise UndoRefused(
                        "nothing to undo: no file changes of this session are journaled"
                    )
                undone = mine[-count:]
                entries = [e for t in reversed(undone) for e in reversed(t.entries)]
                blobs = self._check(entries)
                lines: list[str] = []
                for entry in entries:
                    lines.extend(self._revert(entry, blobs))
                keep = {id(t) for t in undone}
                self._save([t for t in turns if id(t) not in keep], digests(turns))
        return Reverted(tuple(t.turn_id for t in undone), tuple(lines))

    def _check(self, entries: Sequence[Entry]) -> dict[str, bytes]:
        """Refuse unless every path is as the agent left it, replaying the undo on paper.

        Returns the blobs the undo restores, by digest, each verified against its sha256.
        """
        state: dict[str, Node] = {}
        blobs: dict[str, bytes] = {}
        touched = {c.path for e in entries for c in e.changes}
        for entry in entries:
            for change in entry.changes:
                try:
                    path = self._confined(change.path, state)
                except OSError as error:
                    raise UndoRefused(f"{error}; nothing was undone") from None
                now = state.get(change.path) or self._snapshot(path, keep=False)
                if now.same_as != change.after.same_as:
                    raise UndoRefused(
                        f"{change.path} changed since the agent wrote it "
                        f"({_describe(change.after)} then, {_describe(now)} now); "
                        "nothing was undone"
                    )
                if change.after.kind == "dir" and change.before.kind != "dir":
                    for child in self._children(change.path):
                        if child not in touched:
                            raise UndoRefused(
                                f"{change.path}/ now holds {child}, which the agent did not "
                                "create; nothing was undone"
                            )
                digest = change.before.digest
                if change.before.kind in ("file", "link") and digest not in blobs:
                    try:
                        blobs[digest] = self._blob(digest)
                    except OSError as error:
                        raise UndoRefused(
                            f"the saved copy of {change.path} cannot be used ({error}); "
                            "nothing was undone"
                        ) from None
                state[change.path] = change.before
        return blobs

    def _revert(self, entry: Entry, blobs: Mapping[str, bytes]) -> Iterator[str]:
        changes = sorted(entry.changes, key=lambda c: c.path.count("/"), reverse=True)
        for change in changes:  # remove what the agent made, deepest first
            path = self._confined(change.path)  # again: the file system may have changed
            if change.after.kind == "dir" and change.before.kind != "dir":
                path.rmdir()
            elif change.after.kind != "absent" and change.after.kind != "dir":
                path.unlink()
        for change in reversed(changes):  # then put back what was there, shallowest first
            path, before = self._confined(change.path), change.before
            if before.kind == "dir" and change.after.kind != "dir":
                path.mkdir()
            elif before.kind == "file":
                _create_nofollow(path, blobs[before.digest], before.mode)
            elif before.kind == "link":
                os.symlink(os.fsdecode(blobs[before.digest]), path)
            yield _reverted_line(change)


async def journaled(
    journal: Journal | None,
    turn_id: str | None,
    call_id: str,
    tool: str,
    args: JSONObject,
    run: Callable[[], Awaitable[_T]],
    *,
    note: Callable[[str], object] | None = None,
) -> _T:
    """``await run()`` (the tool call), its file changes journaled before and after.

    Journaling never fails the call: an OSError while recording skips journaling it
    (the tool still runs and answers as usual), with a note. The journal's notes go
    to *note* (the terminal), if given.

    Cancellation: the post-image is recorded anyway (shielded), since the call's
    file operation completes even when cancelled.
    """
    if journal is None or turn_id is None:
        return await run()
    pending: Pending | None = None
    try:
        pending = await trio.to_thread.run_sync(journal.before, turn_id, call_id, tool, args)
    except OSError as error:
        journal._note(f"[{tool} not journaled: {error}; /undo cannot revert it]")
    _flush(journal, note)
    try:
        return await run()
    finally:
        if pending is not None:
            with trio.CancelScope(shield=True):
                try:
                    await trio.to_thread.run_sync(journal.after, pending)
                except OSError as error:
                    journal._note(f"[{tool} not journaled: {error}; /undo cannot revert it]")
                _flush(journal, note)


def _flush(journal: Journal, note: Callable[[str], object] | None) -> None:
    for text in journal.take_notes():
        if note is not None:
            note(text)


def touched_paths(workspace: ConfinedRoot, tool: str, args: JSONObject) -> list[Path]:
    """Every path *tool* may create, change or remove, parents before children.

    Raises:
        ToolFailure: a path argument is invalid (the tool would refuse the call).
        KeyError: an argument is missing (likewise).
    """

    def arg(key: str) -> str:
        value = args[key]
        if not isinstance(value, str):
            raise ToolFailure(f"{key} must be a string")
        return value

    if tool == "apply_diff":
        return [workspace.resolve(arg("path"))]
    if tool == "delete_file":
        return [workspace.entry(arg("path"))]
    if tool in ("write_file", "create_directory"):
        path = workspace.resolve(arg("path"))
        return [*_missing_parents(workspace.root, path), path]
    if tool == "move_file":
        source = workspace.entry(arg("source"), "source")
        target = workspace.entry(arg("destination"), "destination")
        inside = list(_tree(source))
        moved = [target / p.relative_to(source) for p in inside]
        return [*inside, *_missing_parents(workspace.root, target), *moved]
    return []


def _missing_parents(root: Path, path: Path) -> list[Path]:
    missing = [p for p in path.parents if (p == root or root in p.parents) and not p.exists()]
    return list(reversed(missing))


def _tree(path: Path) -> Iterator[Path]:
    yield path
    if path.is_dir() and not path.is_symlink():
        for child in sorted(path.iterdir()):
            yield from _tree(child)


def _describe(node: Node) -> str:
    return {"absent": "absent", "file": "a file", "dir": "a directory", "link": "a symlink"}[
        node.kind
    ] + (f" {node.digest[:8]}" if node.kind == "file" else "")


def _reverted_line(change: Change) -> str:
    before, after = change.before.kind, change.after.kind
    if before == "absent":
        return f"removed {change.path}{'/' if after == 'dir' else ''}"
    if after == "absent":
        return f"restored {change.path}{'/' if before == 'dir' else ''} (it had been removed)"
    return f"restored {change.path}"


def _create_nofollow(path: Path, data: bytes, mode: int) -> None:
    """A new file *path* (never through a symlink) with *data* and permission bits *mode*."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        os.fchmod(file.fileno(), mode)


__all__ = [
    "JOURNALED_TOOLS",
    "JOURNAL_DIR",
    "MAX_JOURNAL_BYTES",
    "Change",
    "Entry",
    "Journal",
    "Node",
    "NodeKind",
    "Pending",
    "Reverted",
    "Turn",
    "UndoRefused",
    "journaled",
    "touched_paths",
]
