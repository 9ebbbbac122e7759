"""The chat client's rendering: control characters made visible, notes, summaries (unit)."""

from __future__ import annotations

import io
import re

import pytest

from server.chat._describe import describe_call
from server.chat._input import argument_line
from server.chat._render import Renderer
from server.chat._text import exact, plural, visible, visible_block
from sessions import JSON, JSONObject

# What must never reach the terminal from the outside: C0 (but newline), DEL, C1
# and the bidi controls.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
SPOOF = "touch PWNED_FILE \x1b[1K\r\x1b[2Cecho hello"
NASTY = "a\x1b[2Jb\rc\x9bd\u202ee\x07f\x00g\u2066h"


def render(*events: JSONObject) -> str:
    out = io.StringIO()
    renderer = Renderer(out)
    for event in events:
        renderer.event(event)
    return out.getvalue()


def _event(seq: int, type_: str, **payload: JSON) -> JSONObject:
    return {"seq": seq, "session_id": "s", "type": type_, "ts": 0.0, "turn_id": "t1", **payload}


def test_visible_escapes_what_repr_would() -> None:
    assert visible(NASTY) == "a\\x1b[2Jb\\rc\\x9bd\\u202ee\\x07f\\x00g\\u2066h"
    assert visible("one\ttwo\nthree") == "one\\ttwo\\nthree"
    assert visible("plain text, ünïcode — fine") == "plain text, ünïcode — fine"
    assert visible_block("one\ttwo\r\nthree\rfour") == "one\ttwo\nthree\\rfour"
    assert exact(SPOOF) == "'touch PWNED_FILE \\x1b[1K\\r\\x1b[2Cecho hello'"
    assert exact("a\\x1b") == "'a\\\\x1b'"  # a typed backslash is told apart from ESC


def test_plural() -> None:
    assert plural(1, "byte") == "1 byte"
    assert plural(0, "byte") == "0 bytes"
    assert plural(2, "more entry", "more entries") == "2 more entries"


def test_tool_output_file_contents_and_model_text_are_escaped() -> None:
    out = render(
        _event(1, "turn.started", agent="coder"),
        _event(2, "text.delta", message_id="m1", text="hi \x1b"),
        _event(3, "text.delta", message_id="m1", text="[2J there\u202e"),
        _event(4, "tool.call", call_id="c1", name="read_file", arguments={"path": "x\x1b[2J"}),
        _event(5, "tool.result", call_id="c1", ok=True, summary=NASTY, content=NASTY),
        _event(6, "question.asked", question_id="q1", text="pick\r", options=["\x1b[31mred"]),
        _event(7, "error", code="model_error", message="bad\x1b]0;title\x07", retryable=False),
        _event(8, "turn.ended\x1b[2J", reason="completed"),
    )
    assert not UNSAFE.search(out), out
    assert "hi \\x1b[2J there\\u202e" in out  # an ESC split across deltas is still caught
    assert "> read_file x\\x1b[2J" in out
    assert "= ok: a\\x1b[2Jb\\rc\\x9bd\\u202ee\\x07f\\x00g\\u2066h" in out
    assert "1) \\x1b[31mred" in out
    assert "[turn.ended\\x1b[2J]" in out  # even an unknown event's type


def test_multi_line_text_keeps_its_lines_and_tabs() -> None:
    out = render(
        _event(
            1,
            "message",
            message_id="m1",
            agent="coder",
            content="one\n\ttwo\r\nthree\rX",
            truncated=False,
            tool_calls=[],
        ),
    )
    assert out == "coder: one\n\ttwo\nthree\\rX\n"


def test_an_answer_the_provider_cut_off_says_so() -> None:
    message: JSONObject = {
        "message_id": "m1",
        "agent": "coder",
        "truncated": False,
        "tool_calls": [],
    }
    out = render(_event(1, "message", content="The first half", cut_off="max_tokens", **message))
    assert out == "coder: The first half\n[answer cut off by the provider: max_tokens]\n"
    assert "cut off" not in render(_event(1, "message", content="Whole", **message))


def test_the_approval_header_cannot_be_spoofed() -> None:
    arguments: JSONObject = {"command": SPOOF}
    out = render(
        _event(
            1,
            "approval.requested",
            call_id="c1",
            name="execute_command",
            arguments=arguments,
            rule="default",
            expires_at=0.0,
        ),
    )
    assert not UNSAFE.search(out), out
    assert "touch PWNED_FILE \\x1b[1K\\r\\x1b[2Cecho hello" in out
    assert describe_call("execute_command", arguments).startswith("execute_command `touch PWNED")


def test_approval_arguments_are_exact_and_complete() -> None:
    assert argument_line("command", SPOOF) == (
        "command (has control characters; shown escaped): "
        "'touch PWNED_FILE \\x1b[1K\\r\\x1b[2Cecho hello'"
    )
    long = "echo " + "x" * 1000 + " && rm -rf build"
    assert argument_line("command", long) == f"command: {long}"  # never cut short
    assert argument_line("cwd", "src") == "cwd: src"
    assert argument_line("timeout_s", 5) == "timeout_s: 5"


def test_client_notes_and_prompts_are_escaped_too() -> None:
    out = io.StringIO()
    renderer = Renderer(out)
    renderer.note("! message refused: \x1b[2J")
    renderer.prompt("answer \x1b[2J> ")
    renderer.diff("+++ b/x\n+\x1b[2Jline\twith tab")
    assert not UNSAFE.search(out.getvalue().replace("\t", "")), out.getvalue()
    assert "+\\x1b[2Jline\twith tab" in out.getvalue()


def test_colour_is_the_only_escape_sequence_written() -> None:
    out = io.StringIO()
    Renderer(out, color=True).event(
        _event(1, "tool.result", call_id="c1", ok=False, summary="\x1b[2J", content="")
    )
    assert out.getvalue() == "\x1b[31m= failed: \\x1b[2J\x1b[0m\n"


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        (None, "(temporary: send the message again to retry)"),
        ("run it again", "(temporary: run it again)"),
    ],
)
def test_retryable_errors_say_what_to_do(hint: str | None, expected: str) -> None:
    out = io.StringIO()
    renderer = Renderer(out) if hint is None else Renderer(out, retry_hint=hint)
    renderer.event(_event(1, "error", code="model_unavailable", message="429", retryable=True))
    renderer.event(_event(2, "turn.ended", reason="error"))
    assert f"! error [model_unavailable]: 429 {expected}" in out.getvalue()
    renderer.event(_event(3, "error", code="model_rejected", message="bad", retryable=False))
    assert out.getvalue().endswith("! error [model_rejected]: bad\n")


def test_calls_no_person_was_asked_about_say_which_rule_decided() -> None:
    out = render(
        _event(
            1,
            "message",
            message_id="m1",
            agent="coder",
            content="",
            truncated=False,
            tool_calls=[
                {"call_id": "c1", "name": "execute_command", "arguments": {"command": "ls"}}
            ],
        ),
        _event(
            2,
            "approval.requested",
            call_id="c1",
            name="execute_command",
            arguments={"command": "ls"},
            rule="default",
            expires_at=0.0,
        ),
        _event(
            3, "approval.resolved", call_id="c1", decision="approve", by="user", remember="session"
        ),
        _event(4, "tool.call", call_id="c1", name="execute_command", arguments={"command": "ls"}),
        _event(5, "tool.call", call_id="c2", name="execute_command", arguments={"command": "pwd"}),
        _event(
            6, "tool.call", call_id="c3", name="write_file", arguments={"path": "a", "content": "x"}
        ),
        _event(7, "tool.call", call_id="c4", name="read_file", arguments={"path": "a"}),
    )
    lines = out.splitlines()
    assert "> execute_command `ls`" in lines  # a person approved this one
    assert "> execute_command `pwd` (auto-approved: session rule for execute_command)" in lines
    assert (
        "> write_file a (1 byte) (auto-approved: a rule of the server's approval policy)" in lines
    )
    assert "> read_file a" in lines  # allowed by default: nothing worth saying


def test_summaries_count_in_singular_and_plural() -> None:
    out = render(
        _event(
            1, "tool.call", call_id="c1", name="write_file", arguments={"path": "a", "content": "x"}
        ),
        _event(2, "tool.result", call_id="c1", ok=True, summary="1\n2\n3\n4\n5", content=""),
        _event(3, "tool.result", call_id="c2", ok=True, summary="1\n2\n3\n4\n5\n6", content=""),
    )
    assert "(1 byte)" in out
    assert "... (1 more line)" in out
    assert "... (2 more lines)" in out


def test_a_server_side_call_is_shown_as_running_on_the_server_and_escaped() -> None:
    out = render(
        _event(
            1,
            "tool.started",
            call_id="c1",
            name="mcp__docs__search",
            arguments={"query": "trio\x1b[2J"},
            server="docs\x07",
        ),
        _event(2, "tool.result", call_id="c1", ok=True, summary="found", content="found"),
    )
    assert not UNSAFE.search(out), out
    assert "(on the server: MCP docs\\x07)" in out
    assert '"query": "trio\\u001b[2J"' in out and "= ok: found" in out
