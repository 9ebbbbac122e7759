"""The terminal the chat transcript is written to: colour, live rewriting, whole lines.

:class:`Screen` is what :class:`~._render.Renderer` writes through: styles (ANSI
only with colour), whole indented lines that never carry a control character
(:mod:`._text`), diffs, the status line kept out of the way of output and prompts,
and a running command's output shown as it comes. :func:`use_color` and
:func:`is_live` decide what a stream can do. Separate from :mod:`._render` because
that is about which events say what; this is about putting text on the terminal.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Final, TextIO

from ._status import CommandOutput, StatusLine
from ._text import visible, visible_block

INDENT: Final = "    "
LIVE_PREFIX: Final = "  | "

_RESET = "\x1b[0m"
_CODES: Final = {
    "dim": "\x1b[2m",
    "bold": "\x1b[1m",
    "red": "\x1b[31m",
    "green": "\x1b[32m",
    "yellow": "\x1b[33m",
    "cyan": "\x1b[36m",
}


def use_color(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """Whether to colour *stream*: a terminal, ``NO_COLOR`` unset, ``TERM`` not dumb."""
    env = os.environ if env is None else env
    if "NO_COLOR" in env:
        return False
    return is_live(stream, env)


def is_live(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """Whether *stream* is a terminal that can rewrite a line (``TERM`` not dumb).

    ``NO_COLOR`` does not matter: a status line needs no colour.
    """
    env = os.environ if env is None else env
    if env.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def terminal_size() -> tuple[int, int]:
    size = shutil.get_terminal_size()
    return size.columns, size.lines


class Screen:
    """Writes whole lines (and diffs, prompts, live command output) to *out*.

    *live*: *out* is a terminal that can rewrite lines (status line, live command
    output; with *color* also markdown). *size* gives its (columns, rows).
    """

    def __init__(
        self,
        out: TextIO,
        *,
        color: bool = False,
        live: bool = False,
        size: Callable[[], tuple[int, int]] = terminal_size,
    ) -> None:
        self.out = out
        self.color = color
        self.size = size
        self.status = StatusLine(out, lambda: size()[0], color=color) if live else None
        self.markdown = live and color
        self._stream: str | None = None  # message_id whose text is being streamed
        self._stream_text = ""  # what the open stream put on screen, for erasing it
        self._command = CommandOutput()
        self._command_depth = 0

    def style(self, text: str, *styles: str) -> str:
        if not self.color or not styles:
            return text
        return "".join(_CODES[s] for s in styles) + text + _RESET

    # -- low level --------------------------------------------------------------

    def end_stream(self) -> None:
        """Finish a streamed line, so the next output starts on a fresh line."""
        if self._stream is not None:
            self._stream = None
            self._write("\n")

    def _write(self, text: str) -> None:
        if self.status is not None:
            self.status.erase()
            if text:
                self.status.at_line_start = text.endswith("\n")
        self.out.write(text)
        self.out.flush()

    def lines(self, text: str, depth: int = 0, *styles: str) -> None:
        """*text* as whole lines, indented *depth* levels."""
        self.end_stream()
        prefix = INDENT * depth
        shown = visible_block(text).split("\n")
        self._write("".join(prefix + self.style(line, *styles) + "\n" for line in shown))

    def note(self, text: str, *styles: str) -> None:
        """A message from the client itself (connection state, decisions)."""
        self.lines(text, 0, *styles)

    def prompt(self, text: str) -> None:
        """*text* without a newline, for the user to answer on the same line."""
        self.end_stream()
        self._write(self.style(visible(text), "bold"))

    def diff(self, text: str, depth: int = 0) -> None:
        """A unified diff, additions green and removals red on a terminal."""
        self.end_stream()
        prefix = INDENT * depth + "  "
        out = []
        for line in visible_block(text).split("\n"):
            if line.startswith(("+++", "---")):
                styled = self.style(line, "bold")
            elif line.startswith("+"):
                styled = self.style(line, "green")
            elif line.startswith("-"):
                styled = self.style(line, "red")
            elif line.startswith("@@"):
                styled = self.style(line, "cyan")
            else:
                styled = line
            out.append(prefix + styled + "\n")
        self._write("".join(out))

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Around reading the terminal by other means than :meth:`prompt`: no status line."""
        if self.status is None:
            yield
            return
        self.status.hold()
        try:
            yield
        finally:
            self.status.release()

    def command_output(self, chunk: bytes | bytearray) -> None:
        """Output of the command running now, shown as it comes (live terminals only)."""
        if self.status is not None:
            for line in self._command.add(chunk):
                self.lines(LIVE_PREFIX + line, self._command_depth)

    def _end_command_output(self) -> None:
        for line in self._command.end():
            self.lines(LIVE_PREFIX + line, self._command_depth)


__all__ = ["INDENT", "LIVE_PREFIX", "Screen", "is_live", "terminal_size", "use_color"]
