"""``apply_diff``'s edit: one exact search-and-replace, with its refusals worded for the LLM.

:func:`search_replace` is shared by the terminal client's workspace
(:meth:`~._tools.Workspace.edited`) and the ACP adapter, which edits through the
editor's file system; separate from :mod:`._tools` so the adapter takes the rule
without the rest of the workspace.
"""

from __future__ import annotations

from ._command import ToolFailure


def search_replace(old: str, search: str, replace: str, shown: str) -> str:
    """*old* with *search* replaced once by *replace*, as ``apply_diff`` does.

    Used by the terminal client (``Workspace.edited``) and the ACP adapter: the
    search text must be non-empty and occur exactly once; LF search text matches
    a CRLF file.

    Raises:
        ToolFailure: empty, missing or ambiguous search text (the LLM reads why).
    """
    if not search:
        raise ToolFailure("apply_diff: search text must not be empty")
    if old.count(search) == 0 and "\r\n" in old and "\r\n" not in search:
        search, replace = search.replace("\n", "\r\n"), replace.replace("\n", "\r\n")
    count = old.count(search)
    if count == 0:
        hint = ""
        if search.strip() and search.strip() in old:
            hint = " (it would match with different leading/trailing whitespace)"
        raise ToolFailure(
            f"apply_diff: search text not found in {shown}{hint}; "
            "read the file and copy the exact text to replace"
        )
    if count > 1:
        raise ToolFailure(
            f"apply_diff: search text occurs {count} times in {shown}; "
            "include more surrounding lines so it matches exactly once"
        )
    return old.replace(search, replace, 1)


__all__ = ["search_replace"]
