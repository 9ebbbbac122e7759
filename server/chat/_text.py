"""Text the chat client did not write itself, made safe to put on a terminal.

Tool output, file contents, model text, commands and server messages can carry
control characters: an ESC sequence clears the screen or moves the cursor, a CR
overwrites what was just printed, a bidi override (U+202E) reorders what follows.
Written raw, any of them can make the terminal show something other than what is
there — including in an approval prompt. So every character that is not
printable (``str.isprintable()``: the C0 and C1 controls, DEL, format characters
such as bidi overrides and zero-width spaces, line and paragraph separators,
non-space blanks, surrogates, unassigned code points) is shown escaped, the way
Python's ``repr`` escapes it (``\\x1b``, ``\\r``, ``\\u202e``).

:func:`visible_block` keeps newlines and tabs (a CRLF counts as a newline) so that
multi-line text stays readable; :func:`visible` escapes those too, for text that
must stay on one line. Neither escapes a backslash, so a literal ``\\x1b`` typed
in a file looks like an escaped ESC: safe, but ambiguous. Where the exact text
matters (what an approval would run), :func:`exact` gives an unambiguous form.
"""

from __future__ import annotations

from typing import Final

_KEPT_IN_BLOCKS: Final = frozenset("\n\t")


def _escaped(char: str) -> str:
    return repr(char)[1:-1]


def visible(text: str) -> str:
    """*text* on one line, every non-printable character (newlines too) escaped."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def visible_block(text: str) -> str:
    """*text* with newlines and tabs kept and every other non-printable character escaped."""
    text = text.replace("\r\n", "\n")
    if text.replace("\n", "").replace("\t", "").isprintable():
        return text
    return "".join(
        char if char.isprintable() or char in _KEPT_IN_BLOCKS else _escaped(char) for char in text
    )


def needs_escaping(text: str) -> bool:
    """Whether :func:`visible` would change *text* (it has a non-printable character)."""
    return not text.isprintable()


def exact(text: str) -> str:
    """*text* as an unambiguous quoted literal (Python's ``repr``: backslashes doubled)."""
    return repr(text)


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``"1 byte"``, ``"2 bytes"``: *count* and *noun*, plural unless *count* is 1."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"
