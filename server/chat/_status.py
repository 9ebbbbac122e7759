"""The chat client's status line on a terminal: what the turn waits for, and for how long.

While a turn runs, the last line of the terminal says what is going on when
nothing else does: ``thinking`` (the model has not answered yet), ``waiting for
approval``, ``running `make test` (12.3 s)``, ``waiting for an answer``. It is
one line rewritten in place with ``\\r`` and erased before anything else is
written, so the transcript never contains it. Without colour (``NO_COLOR``) it is
erased by overwriting it with spaces, not with an escape sequence: output
without colour has none at all.

It is drawn only where it cannot damage anything: on a terminal (the renderer
creates none for piped output), and only while the cursor is at the start of an
empty line. Streamed text and prompts leave the cursor mid-line, which pauses
the status line until the renderer finishes the line, so it never overwrites
what the model or the user is typing. Code that reads from the terminal without
:meth:`Renderer.prompt <._render.Renderer.prompt>` (prompt_toolkit) must hold it
(:meth:`Renderer.reading <._render.Renderer.reading>`). From an
``approval.requested`` or ``question.asked`` until it is resolved the line is held
anyway: the client is about to ask the human, and the question is the status.

:meth:`StatusLine.run` redraws it (spinner, elapsed time) a few times a second;
it runs in a nursery of the caller's for as long as the client runs.

:class:`CommandOutput` cuts the output of the command the client is running into
lines as it comes, so the renderer can show it live.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable
from typing import Final, TextIO

import trio
from rich.cells import cell_len, set_cell_size

from agents.events import (
    AgentEvent,
    AgentSwitched,
    ApprovalRequested,
    ApprovalResolved,
    AssistantMessage,
    ErrorEvent,
    QuestionAnswered,
    QuestionAsked,
    SubtaskEnded,
    SubtaskStarted,
    TextDeltaEvent,
    ToolCallEvent,
    ToolResultEvent,
    ToolStarted,
    TurnEnded,
    TurnStarted,
    UsageEvent,
    UserMessage,
)
from sessions import JSONObject

from ._describe import cut_line
from ._text import visible

THINKING: Final = "thinking"
READING: Final = "reading"  # the hold of code reading the terminal (it nests)
ERASE: Final = "\r\x1b[2K"  # back to column 0, erase the whole line
REDRAW_INTERVAL: Final = 0.1
LIVE_LINES: Final = 200  # lines of a running command's output shown as it runs
SHOWN_LINE: Final = 1000  # characters of such a line shown (cut_line's limit)
PARTIAL_LIMIT: Final = 4 * 1024  # characters kept of a line not complete yet (> SHOWN_LINE)
_SPINNER: Final = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_ASCII_SPINNER: Final = "|/-\\"
_DIM: Final = "\x1b[2m"
_RESET: Final = "\x1b[0m"


def activity(
    event: AgentEvent, current: str | None, describe: Callable[[str, JSONObject], str]
) -> str | None:
    """The status after *event* (``None``: nothing to show); *current* is the one before.

    *describe* is the one-line description of a tool call (``name``, ``arguments``).
    """
    match event:
        case UserMessage() | TurnStarted() | AssistantMessage() | ToolResultEvent():
            return THINKING
        case ApprovalResolved() | QuestionAnswered() | SubtaskStarted() | SubtaskEnded():
            return THINKING
        case AgentSwitched():
            return THINKING
        case TextDeltaEvent():
            return None  # the text itself shows that the model is answering
        case ToolCallEvent():
            # This client is the IDE: the worker runs the call as soon as it sees it.
            return f"running {describe(event.name, event.arguments)}"
        case ToolStarted():
            return f"MCP server {visible(event.server)} running {visible(event.name)}"
        case ApprovalRequested():
            return f"waiting for approval: {describe(event.name, event.arguments)}"
        case QuestionAsked():
            return "waiting for an answer"
        case UsageEvent() | ErrorEvent():
            return current
        case TurnEnded():
            return None
        case _:
            # Kinds agents.events does not name publicly (model switch, compaction).
            return "compacting the conversation" if event.type == "compaction.started" else THINKING


class StatusLine:
    """One status line on terminal *out*, *width* columns wide (asked on every draw)."""

    def __init__(
        self,
        out: TextIO,
        width: Callable[[], int],
        *,
        color: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out
        self.width = width
        self.color = color
        self.clock = clock
        self.label: str | None = None
        self.at_line_start = True  # kept up to date by the renderer
        self._since = 0.0
        self._shown = 0  # columns of the line on screen (0: none)
        self._frame = 0
        self._holds: dict[str, int] = {}  # why nothing may be drawn now (and how often)
        encoding = (getattr(out, "encoding", None) or "").lower().replace("-", "")
        self._spinner = _SPINNER if encoding == "utf8" else _ASCII_SPINNER

    def show(self, label: str | None) -> None:
        """Say *label* from now on (``None``: nothing); the elapsed time restarts on a change."""
        if label != self.label:
            self.label = label
            self._since = self.clock()
            if label is None:
                self.erase()

    def erase(self) -> None:
        """Remove the line from the screen (the renderer calls this before every write)."""
        if self._shown:
            self.out.write(self._erasure())
            self.out.flush()
            self._shown = 0

    def _erasure(self) -> str:
        return ERASE if self.color else "\r" + " " * self._shown + "\r"

    def hold(self, reason: str = READING) -> None:
        """Erase the line and draw nothing until :meth:`release` of every *reason* held.

        :data:`READING` holds nest: each reader of the terminal holds it while it
        reads, and two readers can overlap (a prompt closing while the next one
        waits to start), so it is released by the last one. Any other *reason* is
        a state (``asking``): held or not, one :meth:`release` ends it.
        """
        self.erase()
        self._holds[reason] = self._holds.get(reason, 0) + 1 if reason == READING else 1

    def release(self, reason: str = READING) -> None:
        held = self._holds.pop(reason, 0) - 1
        if held > 0:
            self._holds[reason] = held

    def text(self) -> str:
        """The line as drawn now: spinner, label and elapsed time, cut to the width."""
        if self.label is None:
            return ""
        spin = self._spinner[self._frame % len(self._spinner)]
        line = f"{spin} {self.label} ({self.clock() - self._since:.1f} s)"
        limit = max(self.width() - 1, 1)  # never the last column: no wrap, no scroll
        return line if cell_len(line) <= limit else set_cell_size(line, max(limit - 3, 0)) + "..."

    def draw(self) -> None:
        """Draw (or redraw) the line, if there is one and the cursor is free for it."""
        if self.label is None or self._holds or not self.at_line_start:
            return
        self._frame += 1
        line = self.text()
        self.out.write(self._erasure() + (_DIM + line + _RESET if self.color else line))
        self.out.flush()
        self._shown = cell_len(line)

    async def run(self, interval: float = REDRAW_INTERVAL) -> None:
        """Redraw every *interval* seconds until cancelled; the line is erased on the way out.

        Cancellation: the way it ends.
        """
        try:
            while True:
                self.draw()
                await trio.sleep(interval)
        finally:
            self.erase()


class CommandOutput:
    """A running command's output (bytes, in chunks) as lines to show, at most *limit* of them.

    Lines keep their whitespace and are escaped (:func:`._describe.cut_line`); a
    character split across chunks is decoded whole. A ``\\r`` that more text follows
    on the same line starts the line over, as on a terminal (a progress bar shows
    its last state; ``\\r\\n`` ends a line). Of the line not complete yet only its
    first :data:`PARTIAL_LIMIT` characters are kept, more than a shown line ever
    has, so output without newlines takes bounded memory and each chunk costs only
    its own length.
    """

    def __init__(self, limit: int = LIVE_LINES) -> None:
        self.limit = limit
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""  # the last line since its last \r, not complete yet (capped)
        self._cr = False  # the last line's last character so far was a \r
        self._count = 0

    def add(self, chunk: bytes | bytearray) -> list[str]:
        """The lines *chunk* completes."""
        *complete, rest = self._decoder.decode(chunk).split("\n")
        shown: list[str] = []
        for piece in complete:
            self._extend(piece)
            shown += self._line(self._take())
        self._extend(rest)
        return shown

    def end(self) -> list[str]:
        """The last, unfinished line (if any); then start over for the next command."""
        self._extend(self._decoder.decode(b"", final=True))  # at most a U+FFFD
        line = self._take()
        shown = self._line(line) if line else []
        self._count = 0
        self._decoder.reset()
        return shown

    def _extend(self, piece: str) -> None:
        """Add *piece* (no newline) to the line not complete yet."""
        if not piece:
            return
        if self._cr:  # more text after a \r: the line starts over
            self._partial, self._cr = "", False
        if piece.endswith("\r"):  # perhaps the \r of a \r\n: wait and see
            self._cr, piece = True, piece.rstrip("\r")
        cut = piece.rfind("\r")
        if cut >= 0:
            self._partial, piece = "", piece[cut + 1 :]
        room = PARTIAL_LIMIT - len(self._partial)
        if room > 0:
            self._partial += piece[:room]

    def _take(self) -> str:
        line, self._partial, self._cr = self._partial, "", False
        return line

    def _line(self, line: str) -> list[str]:
        self._count += 1
        if self._count <= self.limit:
            return [cut_line(line, SHOWN_LINE)]
        if self._count == self.limit + 1:
            return ["... (more output: the result shows how it ends)"]
        return []
