"""Unified diffs for the chat client: approval previews and edit summaries."""

from __future__ import annotations

import difflib
from typing import Final

from ._text import plural

MAX_DIFF_LINES: Final = 200


def unified_diff(old: str, new: str, source: str, target: str) -> str:
    """*old* → *new* as a unified diff, cut to :data:`MAX_DIFF_LINES` lines."""
    lines = list(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), source, target
        )
    )
    if not lines:
        return "(no changes)"
    out = [
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    ]
    if len(out) > MAX_DIFF_LINES:
        more = plural(len(out) - MAX_DIFF_LINES, "more diff line")
        out = [*out[:MAX_DIFF_LINES], f"[... {more}]\n"]
    return "".join(out).rstrip("\n")


def changed_lines(old: str, new: str) -> tuple[int, int]:
    """``(removed, added)`` line counts between *old* and *new*."""
    removed = added = 0
    diff = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
    for line in list(diff)[2:]:  # after the ---/+++ header
        if line.startswith("-"):
            removed += 1
        elif line.startswith("+"):
            added += 1
    return removed, added
