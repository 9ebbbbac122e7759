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

All methods do blocking file I/O: call them in a worker thread. A lock serialises
them within the process; two clients on one workspace share the index
(read-modify-write, replaced atomically), so the last writer wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final, Literal, TypeAlias, TypeVar

import attrs
import trio

from sessions import JSON, JSONObject

from ._command import ToolFailure
from ._paths import STATE_DIR, ConfinedRoot, state_dir

MAX_JOURNAL_BYTES: Final = 50 * 1024 * 1024
JOURNAL_DIR: Final = Path(STATE_DIR) / "journal"
JOURNALED_TOOLS: Final = frozenset(
    {"write_file", "apply_diff", "create_directory", "delete_file", "move_file"}
)

_T = TypeVar("_T")
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


class Journal:
    """The checkpoints of one workspace, for the session *session_id*."""

    def __init__(
        self, workspace: ConfinedRoot, session_id: str, *, max_bytes: int = MAX_JOURNAL_BYTES
    ) -> None:
        self.workspace = workspace
        self.session_id = session_id
        self.max_bytes = max_bytes
        self.dir = workspace.root / JOURNAL_DIR
        self._lock = threading.Lock()

    # -- recording -------------------------------------------------------------------

    def before(self, turn_id: str, call_id: str, tool: str, args: JSONObject) -> Pending | None:
        """Record the pre-image of what *tool* with *args* may change; ``None``: nothing to.

        A call whose paths are invalid is not journaled (the tool refuses it anyway).
        """
        if tool not in JOURNALED_TOOLS:
            return None
        try:
            paths = touched_paths(self.workspace, tool, args)
        except (ToolFailure, KeyError):
            return None
        with self._lock:
            before = tuple((self._rel(p), self._snapshot(p, keep=True)) for p in paths)
        return Pending(turn_id, call_id, tool, before)

    def after(self, pending: Pending) -> None:
        """Record the post-image of *pending*'s paths and store the entry (bounding the size)."""
        with self._lock:
            changes = tuple(
                Change(rel, node, after)
                for rel, node in pending.before
                if (after := self._snapshot(self.workspace.root / rel, keep=False)).same_as
                != node.same_as
            )
            if not changes:
                return
            turns = self._load()
            entry = Entry(pending.call_id, pending.tool, changes)
            for index, turn in enumerate(turns):
                if turn.turn_id == pending.turn_id:
                    turns[index] = attrs.evolve(turn, entries=(*turn.entries, entry))
                    break
            else:
                turns.append(Turn(pending.turn_id, self.session_id, (entry,)))
            while turns and self._size(turns) > self.max_bytes:
                turns.pop(0)  # the oldest turn first
            self._save(turns)

    # -- reading ---------------------------------------------------------------------

    def turns(self) -> list[Turn]:
        """This session's journaled turns, oldest first."""
        with self._lock:
            return [t for t in self._load() if t.session_id == self.session_id]

    def blob(self, node: Node) -> bytes:
        return (self.dir / "blobs" / node.digest).read_bytes()

    def originals(self) -> dict[str, Node]:
        """Every path this session's agent changed, with what it was before the first change."""
        first: dict[str, Node] = {}
        for turn in self.turns():
            for entry in turn.entries:
                for change in entry.changes:
                    first.setdefault(change.path, change.before)
        return first

    def current(self, rel: str) -> Node:
        with self._lock:
            return self._snapshot(self.workspace.root / rel, keep=False)

    # -- undo ------------------------------------------------------------------------

    def undo(self, count: int = 1) -> Reverted:
        """Revert this session's newest *count* turns, newest call first.

        Raises:
            UndoRefused: nothing to undo, or a path changed since the agent wrote it
                (nothing is reverted then).
        """
        with self._lock:
            turns = self._load()
            mine = [t for t in turns if t.session_id == self.session_id]
            if not mine:
                raise UndoRefused("nothing to undo: no file changes of this session are journaled")
            undone = mine[-count:]
            entries = [e for t in reversed(undone) for e in reversed(t.entries)]
            self._check(entries)
            lines: list[str] = []
            for entry in entries:
                lines.extend(self._revert(entry))
            keep = {id(t) for t in undone}
            self._save([t for t in turns if id(t) not in keep])
        return Reverted(tuple(t.turn_id for t in undone), tuple(lines))

    def _check(self, entries: Sequence[Entry]) -> None:
        """Refuse unless every path is as the agent left it, replaying the undo on paper."""
        state: dict[str, Node] = {}
        touched = {c.path for e in entries for c in e.changes}
        for entry in entries:
            for change in entry.changes:
                now = state.get(change.path) or self._snapshot(
                    self.workspace.root / change.path, keep=False
                )
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
                state[change.path] = change.before

    def _revert(self, entry: Entry) -> Iterator[str]:
        root = self.workspace.root
        changes = sorted(entry.changes, key=lambda c: c.path.count("/"), reverse=True)
        for change in changes:  # remove what the agent made, deepest first
            path = root / change.path
            if change.after.kind == "dir" and change.before.kind != "dir":
                path.rmdir()
            elif change.after.kind != "absent" and change.after.kind != "dir":
                path.unlink()
        for change in reversed(changes):  # then put back what was there, shallowest first
            path, before = root / change.path, change.before
            if before.kind == "dir" and change.after.kind != "dir":
                path.mkdir()
            elif before.kind == "file":
                path.write_bytes(self.blob(before))
                path.chmod(before.mode)
            elif before.kind == "link":
                os.symlink(self.blob(before).decode(), path)
            yield _reverted_line(change)

    # -- storage ---------------------------------------------------------------------

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.workspace.root).as_posix()

    def _snapshot(self, path: Path, *, keep: bool) -> Node:
        """What *path* is now; with *keep*, its bytes are stored as a blob."""
        try:
            info = path.lstat()
        except FileNotFoundError:
            return Node("absent")
        if stat.S_ISLNK(info.st_mode):
            data, kind = os.readlink(path).encode(), "link"
        elif stat.S_ISDIR(info.st_mode):
            return Node("dir")
        else:
            data, kind = path.read_bytes(), "file"
        digest = hashlib.sha256(data).hexdigest()
        if keep:
            blob = self.dir / "blobs" / digest
            if not blob.exists():
                blob.parent.mkdir(parents=True, exist_ok=True)
                _write_atomic(blob, data)
        mode = stat.S_IMODE(info.st_mode) if kind == "file" else 0
        return Node("file" if kind == "file" else "link", digest, mode)

    def _children(self, rel: str) -> list[str]:
        try:
            names = sorted(os.listdir(self.workspace.root / rel))
        except OSError:
            return []
        return [f"{rel}/{name}" for name in names]

    def _size(self, turns: Iterable[Turn]) -> int:
        digests = {
            c.before.digest for t in turns for e in t.entries for c in e.changes if c.before.digest
        }
        return sum(_file_size(self.dir / "blobs" / d) for d in digests)

    def _load(self) -> list[Turn]:
        try:
            data: JSON = json.loads((self.dir / "index.json").read_text())
        except (OSError, ValueError):
            return []
        return [_turn(t) for t in _objects(data.get("turns") if isinstance(data, dict) else None)]

    def _save(self, turns: list[Turn]) -> None:
        state_dir(self.dir.parent.parent)  # with its .gitignore
        self.dir.mkdir(parents=True, exist_ok=True)
        index = {"version": 1, "turns": [attrs.asdict(t) for t in turns]}
        _write_atomic(self.dir / "index.json", json.dumps(index).encode())
        used = {c.before.digest for t in turns for e in t.entries for c in e.changes}
        blobs = self.dir / "blobs"
        for blob in blobs.iterdir() if blobs.is_dir() else ():
            if blob.name not in used:
                blob.unlink(missing_ok=True)


async def journaled(
    journal: Journal | None,
    turn_id: str | None,
    call_id: str,
    tool: str,
    args: JSONObject,
    run: Callable[[], Awaitable[_T]],
) -> _T:
    """``await run()`` (the tool call), its file changes journaled before and after.

    Cancellation: the post-image is recorded anyway (shielded), since the call's
    file operation completes even when cancelled.
    """
    if journal is None or turn_id is None:
        return await run()
    pending = await trio.to_thread.run_sync(journal.before, turn_id, call_id, tool, args)
    try:
        return await run()
    finally:
        if pending is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(journal.after, pending)


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


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _write_atomic(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


def _node(raw: JSON) -> Node:
    value = raw if isinstance(raw, dict) else {}
    digest, mode = value.get("digest"), value.get("mode")
    kind: NodeKind
    match value.get("kind"):
        case "file":
            kind = "file"
        case "dir":
            kind = "dir"
        case "link":
            kind = "link"
        case _:
            kind = "absent"
    return Node(
        kind, digest if isinstance(digest, str) else "", mode if isinstance(mode, int) else 0
    )


def _objects(raw: JSON) -> list[JSONObject]:
    return [item for item in raw if isinstance(item, dict)] if isinstance(raw, list) else []


def _turn(raw: JSONObject) -> Turn:
    entries = tuple(
        Entry(
            str(e.get("call_id")),
            str(e.get("tool")),
            tuple(
                Change(str(c.get("path")), _node(c.get("before")), _node(c.get("after")))
                for c in _objects(e.get("changes"))
            ),
        )
        for e in _objects(raw.get("entries"))
    )
    return Turn(str(raw.get("turn_id")), str(raw.get("session_id")), entries)


__all__ = [
    "JOURNALED_TOOLS",
    "MAX_JOURNAL_BYTES",
    "Change",
    "Entry",
    "Journal",
    "Node",
    "Pending",
    "Reverted",
    "Turn",
    "UndoRefused",
    "journaled",
    "touched_paths",
]
