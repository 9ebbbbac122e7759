"""What the chat client puts on a terminal: markdown, the status line, tool output, plain text.

Unit tests of the renderer with a fake terminal (a StringIO that says it is a
TTY, a fixed size, a fake clock): no server, no pty.
"""

from __future__ import annotations

import io
import re

from markdown_it.common.entities import entities

from server.chat._markdown import Markdown, rows
from server.chat._render import Renderer, terminal_renderer
from server.chat._status import StatusLine
from sessions import JSON, JSONObject
from tests.chat.test_render import NASTY, UNSAFE

DOCUMENT = """# Release notes

Some **bold** text and `inline code`, wrapped at eighty columns because this
sentence is long enough to need it.

## Steps

1. first
2. second
   - nested

```python
def greet(name):
\treturn f"hi {name}"
```

| tool | lines |
|------|------:|
| read | 10 |
| write | 200 |
"""

# Rich's rendering at 80 columns, no colour: headings, a list, a code block, a table.
SNAPSHOT = """\
                                 Release notes

Some bold text and inline code, wrapped at eighty columns because this sentence
is long enough to need it.

Steps

 1 first
 2 second
    • nested


 def greet(name):
     return f"hi {name}"



 tool   lines
 ────────────
 read      10
 write    200

"""
# The styles rich adds (SGR: colours, bold) and the renderer's erase sequences.
OWN_SEQUENCES = re.compile(r"\x1b\[[0-9;]*m|\r|\x1b\[\d*A|\x1b\[J|\x1b\[2K")


class FakeTerminal(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def _event(seq: int, type_: str, **payload: JSON) -> JSONObject:
    return {"seq": seq, "session_id": "s", "type": type_, "ts": 0.0, "turn_id": "t1", **payload}


def message(seq: int, content: str, message_id: str = "m1") -> JSONObject:
    return _event(
        seq,
        "message",
        message_id=message_id,
        agent="coder",
        content=content,
        truncated=False,
        tool_calls=[],
    )


def streamed(content: str, chunks: int = 3) -> list[JSONObject]:
    """*content* as text deltas, then its final message."""
    step = max(len(content) // chunks, 1)
    parts = [content[i : i + step] for i in range(0, len(content), step)]
    deltas = [
        _event(i + 2, "text.delta", message_id="m1", text=part) for i, part in enumerate(parts)
    ]
    return [
        _event(1, "turn.started", agent="coder"),
        *deltas,
        message(len(deltas) + 2, content),
    ]


def live_renderer(height: int = 24) -> tuple[Renderer, io.StringIO]:
    out = FakeTerminal()
    return Renderer(out, color=True, live=True, size=lambda: (80, height)), out


def test_markdown_snapshot_at_80_columns() -> None:
    assert Markdown(width=80, color_system=None).render(DOCUMENT) == SNAPSHOT


def test_markdown_in_colour_styles_headings_and_highlights_code() -> None:
    rendered = Markdown(width=80, color_system="standard").render(DOCUMENT)
    assert "\x1b[1;4mRelease notes\x1b[0m" in rendered  # h1: bold, underlined
    assert "\x1b[96;40mdef\x1b[0m" in rendered  # a keyword of the code block
    link = Markdown(width=80, color_system="standard").render("see [docs](https://example.com)")
    assert OWN_SEQUENCES.sub("", link) == "see docs (https://example.com)\n"  # no OSC 8


def test_a_streamed_message_is_replaced_by_its_rendering() -> None:
    renderer, out = live_renderer()
    for event in streamed("# Hi\n\n- one\n- two"):
        renderer.event(event)
    text = out.getvalue()
    raw, _, rendered = text.partition("\r\x1b[3A\x1b[J")  # up 3 rows: 4 rows streamed
    assert OWN_SEQUENCES.sub("", raw).endswith("coder: # Hi\n\n- one\n- two")
    assert "\x1b[2m# Hi" in raw  # dim: a draft until the rendering replaces it
    assert rendered.startswith("\x1b[1mcoder:\x1b[0m\n")
    assert OWN_SEQUENCES.sub("", rendered) == "coder:\n" + " " * 39 + "Hi\n\n • one\n • two\n"


def test_a_message_taller_than_the_screen_stays_as_streamed() -> None:
    renderer, out = live_renderer(height=4)
    for event in streamed("# Hi\n\n- one\n- two"):
        renderer.event(event)
    assert "\x1b[J" not in out.getvalue() and "•" not in out.getvalue()
    assert OWN_SEQUENCES.sub("", out.getvalue()).endswith("coder: # Hi\n\n- one\n- two\n")


def test_rows_follow_the_terminal() -> None:
    assert rows("", 10) == 1
    assert rows("x" * 10, 10) == 1  # exactly the width: one row, no wrap yet
    assert rows("x" * 11, 10) == 2
    assert rows("a\n\nb\n", 10) == 4  # the cursor ends on the 4th row
    assert rows("\t\t\tx", 20) == 1  # tabs stop at 8, 16, then the last column (19)
    assert rows("\t\t\txy", 20) == 2
    assert rows("界" * 5 + "x", 10) == 2  # wide characters take two columns


def test_markdown_cannot_smuggle_control_characters() -> None:
    evil = (
        "# Title\x1b[2J\n\nclick [here\x1b]8;;http://evil\x07](http://x\x1b[31m)\n\n"
        "```\ncode\x1b]0;pwned\x07 \u202eright\n```\n\n| a\x9b | b\r |\n|---|---|\n| 1 | 2 |\n"
    )
    for events in (streamed(evil), [message(1, evil)]):
        renderer, out = live_renderer()
        for event in events:
            renderer.event(event)
        text = out.getvalue()
        assert "Title\\x1b[2J" in text and "\\u202e" in text and "\\x9b" in text
        assert not UNSAFE.search(OWN_SEQUENCES.sub("", text).replace("\t", "")), text


# Every HTML entity that markdown-it decodes to a character the terminal must not get raw.
_BAD_NAMED = sorted(
    name
    for name, char in entities.items()
    if not char.replace("\n", "").replace("\t", "").isprintable()
)
_BAD_CODES = [code for code in range(0x10000) if not chr(code).isprintable()] + [0xE0001, 0x1D173]
_SGR = re.compile(r"\x1b\[[0-9;]*m")


def _entity_document() -> str:
    named = " ".join(f"&{name};" for name in _BAD_NAMED)
    numeric = " ".join(f"&#x{code:x};" for code in _BAD_CODES)
    decimal = " ".join(f"&#{code};" for code in range(0x100) if not chr(code).isprintable())
    few = "&#x202e;&rlm;&#x200b;&#x2028;&#27;&#x1b;&#x9b;&#7;&#13;"
    return (
        f"# head {few}\n\n{named}\n\n{numeric}\n\n{decimal}\n\n"
        f"- item *{few}* **{few}**\n\n> quote {few}\n\n| a{few} | b |\n|---|---|\n| {few} | 2 |\n\n"
        f'[link {few}](http://x/{few} "title {few}") ![alt {few}](http://i/{few})\n\n'
        f"```py{few}\ncode {few}\n```\n\nraw \x1b[2J \u202e \x9b end\n"
    )


def test_html_entities_never_reach_the_terminal_as_control_characters() -> None:
    assert "rlm" in _BAD_NAMED and "zwj" in _BAD_NAMED and "shy" in _BAD_NAMED
    for color_system in (None, "truecolor"):
        rendered = Markdown(width=80, color_system=color_system).render(_entity_document())
        text = _SGR.sub("", rendered)
        bad = {char for char in text if not char.isprintable() and char not in "\n\t"}
        assert not bad, sorted(map(hex, map(ord, bad)))
        assert "head \\u202e\\u200f\\u200b\\u2028" in text  # decoded, then escaped
        assert "raw \\x1b[2J \\u202e \\x9b end" in text
    plain = Markdown(width=80, color_system=None).render("a &amp; &lt;b&gt; *em* `x &rlm;`")
    assert plain == "a & <b> em x &rlm;\n"  # ordinary entities and markdown still render


def test_tool_output_keeps_its_whitespace() -> None:
    output = 'def f():\n    if x:\n\treturn "a  b"\x1b[2J\n        pass\nmore\n'
    command = {"exit_code": 0, "output": output}
    import json

    out = io.StringIO()
    renderer = Renderer(out)
    renderer.event(_event(1, "tool.result", call_id="c1", ok=True, summary=output, content=""))
    renderer.event(
        _event(
            2,
            "tool.result",
            call_id="c2",
            ok=True,
            summary=json.dumps(command),
            content=json.dumps(command),  # the full result: what the exit line is made of
        )
    )
    assert out.getvalue() == (
        "= ok: def f():\n"
        "      if x:\n"
        '  \treturn "a  b"\\x1b[2J\n'
        "          pass\n"
        "  ... (1 more line)\n"
        "= ok: exit 0\n"
        "  def f():\n"
        "      if x:\n"
        '  \treturn "a  b"\\x1b[2J\n'
        "  ... (2 more lines)\n"
    )


def test_no_color_and_pipes_get_plain_text() -> None:
    events = [
        *streamed("# Hi\n\n**bold** and `code`"),
        _event(9, "tool.call", call_id="c1", name="read_file", arguments={"path": "a"}),
        _event(10, "tool.result", call_id="c1", ok=False, summary=NASTY, content=""),
        _event(11, "turn.ended", reason="completed"),
    ]
    for out, env in (
        (FakeTerminal(), {"NO_COLOR": "1", "TERM": "xterm"}),
        (FakeTerminal(), {"TERM": "dumb"}),
        (io.StringIO(), {"TERM": "xterm-256color"}),
    ):
        renderer = terminal_renderer(out, env)
        for event in events:
            renderer.event(event)
        if renderer.status is not None:  # a status line is fine, but drawn without ESC
            renderer.status.draw()
            renderer.note("after")
        assert "\x1b" not in out.getvalue(), (env, out.getvalue())
        assert "coder: # Hi\n\n**bold** and `code`\n" in out.getvalue()
    assert terminal_renderer(io.StringIO(), {}).status is None  # never in piped output


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def label(status: StatusLine) -> str | None:
    return status.label  # (not narrowed by an earlier assert)


def status_renderer() -> tuple[Renderer, StatusLine, FakeTerminal, Clock]:
    out, clock = FakeTerminal(), Clock()
    renderer = Renderer(out, live=True, size=lambda: (60, 24))
    assert renderer.status is not None
    renderer.status.clock = clock
    return renderer, renderer.status, out, clock


def test_the_status_line_says_what_the_turn_waits_for() -> None:
    renderer, status, out, clock = status_renderer()
    renderer.event(_event(1, "turn.started", agent="coder"))
    assert status.label == "thinking"
    clock.now += 2.5
    status.draw()
    assert out.getvalue().endswith("\r\r⠙ thinking (2.5 s)")
    arguments: JSONObject = {"command": "make test\x1b[2J"}
    renderer.event(
        _event(
            2,
            "approval.requested",
            call_id="c1",
            name="execute_command",
            arguments=arguments,
            rule="default",
            expires_at=0.0,
        )
    )
    assert status.label == "waiting for approval: execute_command `make test\\x1b[2J`"
    before = out.getvalue()
    status.draw()  # held: the approval prompt follows, and it is the status
    assert out.getvalue() == before
    renderer.event(_event(3, "approval.resolved", call_id="c1", decision="approve", by="user"))
    renderer.event(
        _event(4, "tool.call", call_id="c1", name="execute_command", arguments=arguments)
    )
    clock.now += 12.25
    status.draw()
    assert out.getvalue().endswith("⠹ running execute_command `make test\\x1b[2J` (12.2 s)")
    renderer.event(_event(5, "turn.ended", reason="completed"))
    assert label(status) is None
    status.draw()
    assert out.getvalue().endswith("== turn completed ==\n")


def test_the_status_line_is_erased_before_output_and_paused_mid_line() -> None:
    renderer, status, out, _clock = status_renderer()
    renderer.event(_event(1, "turn.started", agent="coder"))
    status.draw()
    drawn = "⠙ thinking (0.0 s)"
    renderer.note("a note")
    assert out.getvalue().endswith(drawn + "\r" + " " * len(drawn) + "\ra note\n")
    renderer.prompt("answer > ")
    status.draw()  # the cursor is after a prompt: nothing may be drawn there
    assert out.getvalue().endswith("answer > ")
    renderer.note("")
    status.hold()
    status.draw()
    assert out.getvalue().endswith("answer > \n")
    status.release()
    status.draw()
    assert out.getvalue().endswith("\n\r\r⠹ thinking (0.0 s)")


def test_a_running_commands_output_is_shown_live_on_a_terminal_only() -> None:
    renderer, _status, out, _clock = status_renderer()
    renderer.event(_event(1, "tool.call", call_id="c1", name="execute_command", arguments={}))
    renderer.command_output(b"  indented\tline\r\nhalf ")
    renderer.command_output("é\x1b[2J".encode()[:1])  # a character split across chunks
    renderer.command_output("é\x1b[2J\nend".encode()[1:])
    renderer.event(_event(2, "tool.result", call_id="c1", ok=True, summary="", content=""))
    assert out.getvalue().endswith(
        "  |   indented\tline\n  | half é\\x1b[2J\n  | end\n= ok: (empty)\n"
    )
    piped = io.StringIO()
    Renderer(piped).command_output(b"hidden\n")
    assert piped.getvalue() == ""
