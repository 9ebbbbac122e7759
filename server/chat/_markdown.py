"""The model's final message as markdown on a terminal: headings, code, tables, lists.

The chat client streams a message's text raw while it arrives; once the final
``message`` event arrives, :class:`Markdown` renders the whole text with
:mod:`rich` (code blocks highlighted, tables drawn, lists bulleted, words wrapped
at the terminal width). The renderer then erases the raw copy and writes the
rendered one in its place, but only when the raw copy is still entirely on the
screen (:func:`rows` says how much of it there is): a message that scrolled off
stays raw, since what scrolled off cannot be erased and printing a long message
twice is worse than printing it plain.

Model text is untrusted. It goes through :func:`._text.visible_block` before rich
parses it (so rich lays out the escaped form), and the text of every segment rich
renders goes through it again before anything is written: markdown-it decodes HTML
entities (``&#x1b;``, ``&#x202e;``, ``&rlm;``), so a control character can appear
only after parsing. The second pass is the guarantee that no control character of
the model's reaches the terminal; rich only adds its own styles. (An entity that
decodes to a zero-width character is measured by rich before it is escaped, so
such a line can come out a few columns wider than *width*; it is never cut.)
Rich markup and emoji codes are never interpreted (the text is markdown, not
console markup) and links are shown as ``text (url)``, not as OSC 8 hyperlinks,
so a URL cannot carry an escape sequence either.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Final, Literal, TypeAlias

import attrs
from rich.cells import cell_len
from rich.console import Console
from rich.markdown import Markdown as RichMarkdown
from rich.segment import Segment, Segments

from ._text import visible_block

ColorSystem: TypeAlias = Literal["auto", "standard", "256", "truecolor"] | None

# Tab stops of a terminal (rows() counts columns as the terminal does).
_TAB: Final = 8


@attrs.frozen
class Markdown:
    """How to render markdown: *width* columns; *color_system* ``None`` for no colour at all.

    ``"auto"`` lets rich pick the colours the terminal supports (from ``$COLORTERM``
    and ``$TERM``).
    """

    width: int = 80
    color_system: ColorSystem = "auto"
    code_theme: str = "monokai"

    def render(self, text: str) -> str:
        """*text* (markdown from the model) as terminal output, with a final newline."""
        buffer = io.StringIO()
        console = Console(
            file=buffer,
            width=max(self.width, 20),
            force_terminal=True,
            color_system=self.color_system,
            markup=False,
            emoji=False,
            highlight=False,
            legacy_windows=False,
        )
        markdown = RichMarkdown(visible_block(text), code_theme=self.code_theme, hyperlinks=False)
        # Escaped again after parsing (see the module docstring); crop=False: an escape
        # widens its line, and cutting it would hide what the model sent.
        console.print(Segments(_escaped(console.render(markdown))), crop=False)
        return "\n".join(line.rstrip(" ") for line in buffer.getvalue().split("\n"))


def _escaped(segments: Iterable[Segment]) -> Iterator[Segment]:
    """*segments* with their text escaped; rich's own control segments (none here) kept."""
    for segment in segments:
        if segment.control:
            yield segment
        else:
            yield Segment(visible_block(segment.text), segment.style)


def rows(text: str, width: int) -> int:
    """How many terminal rows *text* (printable, but for newlines and tabs) takes.

    The terminal wraps a line at *width* columns and moves tabs to the next
    multiple of 8 (never wrapping on one); a line of exactly *width* columns takes
    one row. The count is what the renderer moves the cursor up by to erase a
    streamed message, so it errs on no side: it follows the terminal.
    """
    width = max(width, 1)
    total, column = 1, 0
    for char in text:
        if char == "\n":
            total, column = total + 1, 0
        elif char == "\t":
            column = max(column, min((column // _TAB + 1) * _TAB, width - 1))
        else:
            size = cell_len(char)
            if column + size > width:
                total, column = total + 1, 0
            column += size
    return total
