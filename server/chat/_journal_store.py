"""The undo journal's storage: ``index.json``, the pre-image blobs, the lock, validation.

:class:`JournalStore` is the half of :class:`~._journal.Journal` that owns the
directory ``<workspace>/.agent-runtime/journal/``; the journal adds recording and
undoing on top. Separate because it is its own concern: how the index survives
other clients and an agent that may have tampered with it.

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
``0..0o7777`` is dropped with a note. State folders (``.agent-runtime``,
``journal``, ``blobs``) that are symlinks or not directories turn journaling off
for the run (one note); they are never followed. Notes collect in
:meth:`JournalStore.take_notes`.
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
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Final

import attrs

from sessions import JSON, JSONObject

from ._command import ToolFailure
from ._journal_model import Change, Entry, Node, NodeKind, Turn, digests
from ._paths import STATE_DIR, ConfinedRoot, in_state_dir, state_dir

MAX_JOURNAL_BYTES: Final = 50 * 1024 * 1024
ORPHAN_GRACE: Final = 3600.0  # seconds an unreferenced blob is kept (another client's pending)
_DIGEST: Final = re.compile(r"[0-9a-f]{64}")
JOURNAL_DIR: Final = Path(STATE_DIR) / "journal"


class JournalStore:
    """The journal directory of one workspace, for the session *session_id*."""

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
            data, kind = read_nofollow(path), "file"
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
            data = read_nofollow(self.dir / "blobs" / digest)
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
        return sum(_file_size(self.dir / "blobs" / d) for d in digests(turns) if d)

    def _load(self) -> list[Turn]:
        try:
            data: JSON = json.loads(read_nofollow(self.dir / "index.json"))
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
        used = digests(turns)
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


def _file_size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0


def _kind(path: Path) -> NodeKind:
    """What *path* is, symlinks not followed (a missing or non-directory parent: absent)."""
    try:
        info = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return "absent"
    if stat.S_ISLNK(info.st_mode):
        return "link"
    return "dir" if stat.S_ISDIR(info.st_mode) else "file"


def read_nofollow(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        return file.read()


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


__all__ = ["JOURNAL_DIR", "MAX_JOURNAL_BYTES", "ORPHAN_GRACE", "JournalStore", "read_nofollow"]
