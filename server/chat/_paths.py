"""Paths confined to the workspace: what a tool argument may name, and how it is shown.

Absolute paths, ``~``, drive letters and ``..`` escapes are refused, and symlinks
are resolved before the check, so a link pointing outside cannot be used to
escape either. Refusals raise :class:`ToolFailure` (the LLM reads them).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
from pathlib import Path
from typing import Final

from ._command import ToolFailure

_DRIVE: Final = re.compile(r"^[A-Za-z]:")


class ConfinedRoot:
    """A directory, and the paths inside it that tool arguments may name.

    Raises:
        ValueError: *root* is not an existing directory.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        path = Path(root).expanduser().resolve()
        if not path.is_dir():
            raise ValueError(f"workspace {str(root)!r} is not a directory")
        self.root = path

    def resolve(self, value: str, key: str = "path") -> Path:
        """The real path *value* names, symlinks resolved, checked to be inside the root.

        Raises:
            ToolFailure: empty, absolute or escaping path.
        """
        normal = self._normal(value, key)
        real = (self.root / normal).resolve()
        if real != self.root and self.root not in real.parents:
            raise ToolFailure(f"{key} {value!r} resolves outside the workspace")
        return real

    def entry(self, value: str, key: str = "path") -> Path:
        """Like :meth:`resolve`, but a final symlink is the entry itself, not its target."""
        normal = self._normal(value, key)
        if normal == ".":
            raise ToolFailure(f"{key} {value!r} is the workspace root itself")
        head, tail = posixpath.split(normal)
        return self.resolve(head or ".", key) / tail

    def stored(self, rel: str) -> Path:
        """The entry a stored workspace-relative POSIX path names (the undo journal's).

        Nothing is normalised: *rel* must already be normal (relative, no empty, ``.``
        or ``..`` components, not the root itself), so ``root / rel`` is lexically
        inside the root. Whether a directory on the way is a symlink now is for the
        caller to check when it uses the path (the file system changes).

        Raises:
            ToolFailure: *rel* is not such a path.
        """
        if (
            not rel
            or "\x00" in rel
            or rel.startswith("/")
            or rel in (".", "..")
            or rel.startswith("../")
            or posixpath.normpath(rel) != rel
        ):
            raise ToolFailure(f"{rel!r} is not a normal path inside the workspace")
        return self.root.joinpath(*rel.split("/"))

    def relative(self, path: Path) -> str:
        """*path* as the workspace-relative POSIX text a tool argument would use."""
        try:
            text = path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)
        return text or "."

    def _normal(self, value: str, key: str) -> str:
        if "\x00" in value:
            raise ToolFailure(f"{key} {value!r} contains a NUL byte")
        unified = value.replace("\\", "/").strip()
        if not unified:
            raise ToolFailure(f"{key} must not be empty (use '.' for the workspace root)")
        if unified.startswith(("/", "~")) or _DRIVE.match(unified):
            raise ToolFailure(f"{key} {value!r} must be relative to the workspace")
        normal = posixpath.normpath(unified)
        if normal == ".." or normal.startswith("../"):
            raise ToolFailure(f"{key} {value!r} escapes the workspace (it leads outside via '..')")
        return normal


STATE_DIR: Final = ".agent-runtime"


def state_dir(root: Path) -> Path:
    """``<workspace>/.agent-runtime``, created with a ``.gitignore`` of ``*`` on first use.

    The client keeps its history and undo journal there; they are the user's, not
    the project's, so ``git status`` should not list them. A planted symlink is never
    followed: the folder is opened ``O_NOFOLLOW`` and the ``.gitignore`` made inside
    that very folder, so nothing is written where the link points.

    Raises:
        OSError: the folder is a symlink or not a directory (or cannot be made).
    """
    folder = root / STATE_DIR
    with contextlib.suppress(FileExistsError):
        folder.mkdir(parents=True)  # an existing symlink is "exists", not followed
    fd = open_state_dir(root)
    try:
        with contextlib.suppress(FileExistsError):
            ignore = os.open(".gitignore", _NEW_FILE, 0o644, dir_fd=fd)
            with os.fdopen(ignore, "wb") as file:
                file.write(b"# agent-runtime chat: history and undo journal\n*\n")
    finally:
        os.close(fd)
    return folder


# Created exclusively and never through a symlink (O_EXCL refuses one, dangling or not).
_NEW_FILE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def open_state_dir(root: Path) -> int:
    """A descriptor of ``<workspace>/.agent-runtime`` itself, never of a symlink's target.

    Open files relative to it (``dir_fd``) so that swapping the folder for a symlink
    afterwards cannot redirect them either.

    Raises:
        OSError: missing, a symlink (``ELOOP``) or not a directory.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(root / STATE_DIR, flags)


def in_state_dir(rel: str) -> bool:
    """Whether the workspace-relative POSIX path *rel* is the state folder or inside it."""
    return rel.split("/", 1)[0].casefold() == STATE_DIR
