"""``/diff``: what the agent changed in the workspace this session, as unified diffs.

:func:`session_diff` compares each path's first pre-image in the undo journal
(:mod:`._journal`) with what is there now. Separate from :mod:`._slash` because
it is file work (blocking, run in a thread), not the command's dialogue.
"""

from __future__ import annotations

from pathlib import Path

from ._diff import unified_diff
from ._journal import Journal, Node


def session_diff(journal: Journal, *, git: bool) -> list[str]:
    """A unified diff per path the agent changed this session: first pre-image → now.

    Blocking (reads files): call it in a thread.

    Raises:
        OSError: a stored copy is missing or damaged, or a file cannot be read.
    """
    out: list[str] = []
    for rel, before in sorted(journal.originals().items()):
        now = journal.current(rel)
        if now.same_as == before.same_as:
            continue
        header = f"diff --git a/{rel} b/{rel}\n" if git else ""
        if "dir" in (before.kind, now.kind):
            what = "created" if now.kind == "dir" else "removed"
            out.append(f"{header}(directory {rel}/ {what})")
            continue
        old, new = _text(journal, rel, before, now=False), _text(journal, rel, now, now=True)
        if old is None or new is None:
            out.append(f"{header}Binary files a/{rel} and b/{rel} differ")
            continue
        source = f"a/{rel}" if before.kind != "absent" else "/dev/null"
        target = f"b/{rel}" if now.kind != "absent" else "/dev/null"
        out.append(header + unified_diff(old, new, source, target))
    return out


def _text(journal: Journal, rel: str, node: Node, *, now: bool) -> str | None:
    """A file's text (``""`` if absent); ``None`` if binary."""
    if node.kind == "absent":
        return ""
    if node.kind == "link":
        return f"(symlink) {journal.blob(node).decode(errors='replace')}\n" if not now else ""
    data = journal.current_bytes(rel) if now else journal.blob(node)
    if b"\x00" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def in_git(root: Path) -> bool:
    return any((p / ".git").exists() for p in (root, *root.parents))


__all__ = ["in_git", "session_diff"]
