"""What an MCP server writes besides its JSON-RPC answers, read safely.

* Its stderr (stdio servers): each line logged, the last few kept in a
  :class:`StderrTail` to say why the server stopped (bounded, escaped).
* Lines of its stdout the SDK could not parse: :func:`screened` tells stray
  output (a banner, a ``print``, a JSON log line) from a broken answer.

Everything quoted from a server is escaped (:func:`printable`): control and
format characters could break a log line or a terminal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import unicodedata
from collections import deque
from collections.abc import Iterable
from typing import Literal

import trio

logger = logging.getLogger("agents.mcp")

#: Longest stderr line of a stdio server we log; the rest of the line is dropped.
_STDERR_LINE = 4096
#: What of a server's stderr its ``last_error`` quotes: the last lines, at most so many chars.
_TAIL_LINES = 5
_TAIL_CHARS = 400
#: How much of an unparseable message its description quotes.
_EXCERPT_CHARS = 60


def screened(item: Exception) -> tuple[str | None, str]:
    """What a server did to send *item* (an exception on the read stream), briefly,
    or ``None`` for stray output; and an excerpt of what it sent.

    The SDK validates each line as the union of JSON-RPC messages; for a JSON
    value, every failed member's error carries the whole value as its input.
    """
    import pydantic

    if not isinstance(item, pydantic.ValidationError):
        detail = printable(str(item), _EXCERPT_CHARS, keep="head")
        return f"broke its connection ({type(item).__name__}{f': {detail}' if detail else ''})", ""
    errors = item.errors()
    if errors and errors[0]["type"] == "json_invalid":
        raw = errors[0].get("input")
        return None, printable(raw if isinstance(raw, str) else "", _EXCERPT_CHARS, keep="head")
    message = next((e["input"] for e in errors if isinstance(e.get("input"), dict)), None)
    text = ""
    with contextlib.suppress(TypeError, ValueError):
        text = json.dumps(message if message is not None else errors[0].get("input"))
    excerpt = printable(text, _EXCERPT_CHARS, keep="head")
    if message is None or "id" not in message:
        return None, excerpt  # a JSON log line, a bare value: nothing it could answer
    return f"sent an unparseable message (not a JSON-RPC message: {excerpt})", excerpt


def printable(text: str, limit: int, *, keep: Literal["head", "tail"] = "tail") -> str:
    """*text* with control characters escaped, cut to its head or tail of *limit* chars (…)."""
    chars = text if keep == "head" else reversed(text)
    out: list[str] = []
    size = 0
    for char in chars:
        safe = _escaped(char)
        if size + len(safe) > limit:
            out.append("…")
            break
        out.append(safe)
        size += len(safe)
    return "".join(out if keep == "head" else reversed(out))


def _escaped(char: str) -> str:
    # Cc/Cf/Zl/Zp: what could break a log line or a terminal (ANSI escapes, bidi overrides).
    if unicodedata.category(char) not in ("Cc", "Cf", "Zl", "Zp"):
        return char
    return char.encode("unicode_escape").decode("ascii")


class StderrTail:
    """The last lines a stdio server wrote to stderr (bounded), to say why it stopped."""

    def __init__(self) -> None:
        self._lines: deque[str] = deque(maxlen=_TAIL_LINES)
        #: Set once the stream was read to its end (or its reader stopped).
        self.ended = trio.Event()

    def add(self, line: str) -> None:
        self._lines.append(line)

    def text(self) -> str:
        """The last lines, ``\\n`` between them, control characters escaped, cut to its tail."""
        return printable("\n".join(self._lines), _TAIL_CHARS)

    def quoted(self, reason: str) -> str:
        """*reason*, followed by the server's last stderr lines if it wrote any."""
        text = self.text()
        return f"{reason}; its stderr: {text}" if text else reason


async def log_stderr(name: str, stream: trio.lowlevel.FdStream, tail: StderrTail) -> None:
    """Log each stderr line of the server, keeping the last in *tail*; bounded memory."""
    try:
        pending = b""
        while chunk := await stream.receive_some(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            if len(pending) > _STDERR_LINE:
                lines.append(pending)
                pending = b""
            _log_lines(name, lines, tail)
        _log_lines(name, [pending], tail)  # a last line without its newline
    finally:
        tail.ended.set()


def _log_lines(name: str, lines: Iterable[bytes], tail: StderrTail) -> None:
    for line in lines:
        text = line[:_STDERR_LINE].decode("utf-8", "replace").rstrip()
        if text:
            logger.info("MCP server %s: %s", name, text)
            tail.add(text)
