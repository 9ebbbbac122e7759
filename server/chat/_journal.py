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
them within the process; two clients on one workspace share the index: each
load-modify-save (recording an entry, undoing) holds an exclusive ``flock`` on
``journal/lock``, re-reads the index under it and replaces it atomically, so no
client's entries are lost. A blob is deleted only when no entry of that re-read
index references it (and, if it was never referenced, once it is an hour old: it
may be another client's pending pre-image).

The index is not trusted (the agent's shell commands can rewrite it; the file tools
refuse the state folder): on load, an entry whose path is not a normal relative path
outside ``.agent-runtime``, whose digest is not a sha256, or whose mode is not
``0..0o7777`` is dropped with a note. Before changing anything, ``/undo`` checks
that no directory on each path is a symlink and that every needed blob exists with
its sha256; it checks the path again right before each change. State folders
(``.agent-runtime``, ``journal``, ``blobs``) that are symlinks or not directories
turn journaling off for the run (one note); they are never followed. Notes collect
in :meth:`Journal.take_notes` (:func:`journaled` hands them to its *note*).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final, Literal, TypeAlias, TypeVar

import attrs
import trio

from sessions import JSON, JSONObject

from ._command import ToolFailure
from ._paths import STATE_DIR, ConfinedRoot, in_state_dir, state_dir

MAX_JOURNAL_BYTES: Final = 50 * 1024 * 1024
ORPHAN_GRACE: Final = 3600.0  # seconds an unreferenced blob is kept (another client's pending)
_DIGEST: Final = re.compile(r"[0-9a-f]{64}")
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
        self.off: str | None = None  # why journaling is off for this run (a state folder)
        self._lock = threading.Lock()
        self._notes_lock = threading.Lock()
        self._notes: list[str] = []
        self._noted: set[str] = set()

    def take_notes(self) -> list[str]:
        """The warnings collected since the last call (each distinct one once per run)."""
        with self._notes_lock:
            notes, self._notes = self._notes, []
        return notes

    def _note(self, text: str) -> None:
        with self._notes_lock:
            if text not in self._noted:
                self._noted.add(text)
                self._notes.append(text)

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
                previous = _digests(turns)
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
        return _read_nofollow(self._confined(rel))

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
                self._save([t for t in turns if id(t) not in keep], _digests(turns))
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

    # -- paths -----------------------------------------------------------------------

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.workspace.root).as_posix()

    def _root(self, rel: str) -> Path:
        return self.workspace.root.joinpath(*rel.split("/"))

    def _confined(self, rel: str, planned: Mapping[str, Node] | None = None) -> Path:
        """The entry *rel* names, if no directory on the way is (or, per *planned*, will
        be) a symlink: so it is inside the workspace whatever the file system holds.

        Raises:
            OSError: *rel* is not normal, is in the state folder, or leads through a symlink.
        """
        try:
            path = self.workspace.stored(rel)
        except ToolFailure as error:
            raise OSError(str(error)) from None
        if in_state_dir(rel):
            raise OSError(f"{rel} is inside the client's state folder {STATE_DIR}/")
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            node = (planned or {}).get(prefix)
            kind = node.kind if node is not None else _kind(self._root(prefix))
            if kind == "link":
                raise OSError(f"{rel} leads through the symlink {prefix}")
            if kind != "dir":
                break  # nothing below it exists
        return path

    # -- storage ---------------------------------------------------------------------

    def _state_dirs(self, *, create: bool) -> bool:
        """Whether journaling is on: ``.agent-runtime``, ``journal`` and ``blobs`` are real
        directories (or absent, unless *create*: then they are made, one at a time). A
        symlink or a non-directory turns journaling off for the run, with one note."""
        if self.off is not None:
            return False
        root = self.workspace.root
        for path in (root / STATE_DIR, self.dir, self.dir / "blobs"):
            if create:
                with contextlib.suppress(FileExistsError):
                    path.mkdir()  # never through a symlink: an existing one is "exists"
            kind = _kind(path)
            if kind == "absent" and not create:
                return True  # nothing below exists either
            if kind != "dir":
                shown = path.relative_to(root).as_posix()
                what = "a symlink" if kind == "link" else "not a directory"
                self.off = f"{shown} is {what}"
                self._note(
                    f"[undo journal off for this run: {shown} is {what} (never followed); "
                    "/undo and /diff are unavailable]"
                )
                return False
        if create:
            state_dir(root)  # its .gitignore
        return True

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """An exclusive ``flock`` on ``journal/lock``: one client's load-modify-save at a time."""
        fd = os.open(
            self.dir / "lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _snapshot(self, path: Path, *, keep: bool) -> Node:
        """What *path* is now; with *keep*, its bytes are stored as a blob."""
        try:
            info = path.lstat()
        except FileNotFoundError:
            return Node("absent")
        if stat.S_ISLNK(info.st_mode):
            data, kind = os.fsencode(os.readlink(path)), "link"
        elif stat.S_ISDIR(info.st_mode):
            return Node("dir")
        else:
            data, kind = _read_nofollow(path), "file"
        digest = hashlib.sha256(data).hexdigest()
        if keep:
            blob = self.dir / "blobs" / digest
            try:
                self._blob(digest)
                os.utime(blob, follow_symlinks=False)  # fresh: not an old orphan to delete
            except OSError:  # missing or damaged
                with contextlib.suppress(FileNotFoundError):
                    blob.unlink()
                _write_atomic(blob, data)
        mode = stat.S_IMODE(info.st_mode) if kind == "file" else 0
        return Node("file" if kind == "file" else "link", digest, mode)

    def _blob(self, digest: str) -> bytes:
        if not _DIGEST.fullmatch(digest):
            raise OSError(f"{digest!r} is not a sha256 digest")
        try:
            data = _read_nofollow(self.dir / "blobs" / digest)
        except FileNotFoundError:
            raise OSError(f"journal blob {digest[:12]} is missing") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise OSError(f"journal blob {digest[:12]} is damaged (its sha256 differs)")
        return data

    def _children(self, rel: str) -> list[str]:
        try:
            names = sorted(os.listdir(self._root(rel)))
        except OSError:
            return []
        return [f"{rel}/{name}" for name in names]

    def _size(self, turns: Iterable[Turn]) -> int:
        return sum(_file_size(self.dir / "blobs" / d) for d in _digests(turns) if d)

    def _load(self) -> list[Turn]:
        try:
            data: JSON = json.loads(_read_nofollow(self.dir / "index.json"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as error:
            self._note(f"[undo journal: index.json is unreadable ({error}); starting afresh]")
            return []
        raw = data.get("turns") if isinstance(data, dict) else None
        turns: list[Turn] = []
        for item in _objects(raw):
            turn = self._turn(item)
            if turn is not None:
                turns.append(turn)
        return turns

    def _turn(self, raw: JSONObject) -> Turn | None:
        """*raw* from the index, without the entries that fail validation (noted)."""
        turn_id, session_id = raw.get("turn_id"), raw.get("session_id")
        if not isinstance(turn_id, str) or not isinstance(session_id, str):
            self._note("[undo journal: dropped a malformed turn of index.json]")
            return None
        entries: list[Entry] = []
        items = _objects(raw.get("entries"))
        for item in items:
            try:
                entries.append(self._entry(item))
            except ValueError as error:
                self._note(
                    f"[undo journal: dropped call {item.get('call_id')!r} of turn {turn_id!r} "
                    f"from index.json: {error}; /undo will not revert it]"
                )
        if items and not entries:
            return None  # nothing of it is left to undo
        return Turn(turn_id, session_id, tuple(entries))

    def _entry(self, raw: JSONObject) -> Entry:
        call_id, tool, changes = raw.get("call_id"), raw.get("tool"), raw.get("changes")
        if not isinstance(call_id, str) or not isinstance(tool, str):
            raise ValueError("call_id and tool must be strings")
        if not isinstance(changes, list):
            raise ValueError("changes must be a list")
        parsed: list[Change] = []
        for change in changes:
            if not isinstance(change, dict):
                raise ValueError("a change must be an object")
            path = change.get("path")
            if not isinstance(path, str):
                raise ValueError("a path must be a string")
            try:
                self.workspace.stored(path)
            except ToolFailure as error:
                raise ValueError(str(error)) from None
            if in_state_dir(path):
                raise ValueError(f"{path!r} is inside the client's state folder {STATE_DIR}/")
            parsed.append(Change(path, _node(change.get("before")), _node(change.get("after"))))
        return Entry(call_id, tool, tuple(parsed))

    def _save(self, turns: list[Turn], previous: set[str]) -> None:
        """Write the index; delete the blobs it no longer references.

        *previous* are the digests of the index as re-read under the lock: a blob only
        they referenced is deleted now, one never referenced once it is
        :data:`ORPHAN_GRACE` old (it may be another client's pending pre-image).
        """
        index = {"version": 1, "turns": [attrs.asdict(t) for t in turns]}
        _write_atomic(self.dir / "index.json", json.dumps(index).encode())
        used = _digests(turns)
        blobs = self.dir / "blobs"
        now = time.time()
        for name in os.listdir(blobs):
            if name in used:
                continue
            path = blobs / name
            try:
                old = now - path.lstat().st_mtime > ORPHAN_GRACE
            except OSError:
                continue
            if name in previous or old:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


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


def _file_size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0


def _digests(turns: Iterable[Turn]) -> set[str]:
    return {c.before.digest for t in turns for e in t.entries for c in e.changes}


def _kind(path: Path) -> NodeKind:
    """What *path* is, symlinks not followed (a missing or non-directory parent: absent)."""
    try:
        info = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return "absent"
    if stat.S_ISLNK(info.st_mode):
        return "link"
    return "dir" if stat.S_ISDIR(info.st_mode) else "file"


def _read_nofollow(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        return file.read()


def _create_nofollow(path: Path, data: bytes, mode: int) -> None:
    """A new file *path* (never through a symlink) with *data* and permission bits *mode*."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        os.fchmod(file.fileno(), mode)


def _write_atomic(path: Path, data: bytes) -> None:
    """*path* replaced by *data* via a fresh temporary file (created exclusively)."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _node(raw: JSON) -> Node:
    """A node of the index, validated.

    Raises:
        ValueError: an unknown kind, a digest that is not a sha256 (for a file or a
            link; empty otherwise), or a mode outside ``0..0o7777``.
    """
    if not isinstance(raw, dict):
        raise ValueError("a node must be an object")
    digest, mode = raw.get("digest", ""), raw.get("mode", 0)
    kind: NodeKind
    match raw.get("kind"):
        case "absent" | "file" | "dir" | "link" as known:
            kind = known
        case other:
            raise ValueError(f"unknown kind {other!r}")
    if not isinstance(digest, str) or not (
        _DIGEST.fullmatch(digest) if kind in ("file", "link") else digest == ""
    ):
        raise ValueError(f"invalid digest {digest!r}")
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
        raise ValueError(f"invalid mode {mode!r}")
    return Node(kind, digest, mode)


def _objects(raw: JSON) -> list[JSONObject]:
    return [item for item in raw if isinstance(item, dict)] if isinstance(raw, list) else []


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
