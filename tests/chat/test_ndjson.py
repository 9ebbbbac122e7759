"""``chat -m ... --output json``: NDJSON on stdout, against the real server (in-process, port 0)."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest
import trio

from server.chat import (
    EXIT_FAILED,
    EXIT_NOT_APPROVED,
    EXIT_OK,
    EXIT_USAGE,
    ChatOptions,
    UsageError,
    chat_main,
    chat_parser,
    options_from_args,
)
from sessions import JSON, JSONObject
from tests.chat.test_client import RUN_LIMIT, options
from tests.server.helpers import LiveServer


async def run_json(opts: ChatOptions) -> tuple[int, list[JSONObject], str]:
    """Exit status, the stdout lines (each parsed: every one must be a JSON object), stderr."""
    out, err = io.StringIO(), io.StringIO()
    with trio.fail_after(RUN_LIMIT):
        code = await chat_main(opts, out=out, err=err, env={})
    lines: list[JSONObject] = []
    text = out.getvalue()
    assert text.endswith("\n"), text
    for line in text.splitlines():
        value: JSON = json.loads(line)
        assert isinstance(value, dict), line
        lines.append(value)
    return code, lines, err.getvalue()


async def session_events(server: LiveServer, session_id: str) -> list[JSON]:
    events: list[JSON] = []
    async with server.http() as http:
        after, more = 0, True
        while more:
            page = await http.get(f"/v1/sessions/{session_id}/events", params={"after": after})
            body: Any = page.json()
            events += body["events"]
            after, more = body["next_after"], body["has_more"]
    return events


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


async def test_events_then_the_exit_line_and_nothing_else(server: LiveServer, root: Path) -> None:
    opts = options(server.url, root, message="create a.py with x", yes=True, output="json")
    code, lines, err = await run_json(opts)
    assert code == EXIT_OK, err
    assert (root / "a.py").read_text() == "x"
    *events, last = lines
    assert last == {"type": "chat.exit", "code": EXIT_OK, "reason": "ok"}
    session_id = events[0]["session_id"]
    assert isinstance(session_id, str)
    assert events == await session_events(server, session_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "turn.ended"
    assert "approving write_file (--yes)" in err  # notes: plain text on stderr
    assert f"[session {session_id}" in err


async def test_an_approval_nobody_could_give_exits_not_approved(
    server: LiveServer, root: Path
) -> None:
    code, lines, err = await run_json(
        options(server.url, root, message="create a.py with x", output="json")
    )
    assert code == EXIT_NOT_APPROVED
    assert lines[-1] == {"type": "chat.exit", "code": EXIT_NOT_APPROVED, "reason": "not_approved"}
    resolved = [e for e in lines if e["type"] == "approval.resolved"]
    assert [e["decision"] for e in resolved] == ["reject"]
    assert not (root / "a.py").exists()
    assert "pass --yes or --auto-approve" in err


async def test_a_client_failure_still_ends_with_the_exit_line(root: Path) -> None:
    opts = options("http://127.0.0.1:1", root, message="hi", output="json", attempts=1)
    code, lines, err = await run_json(opts)
    assert code == EXIT_FAILED
    assert len(lines) == 1
    assert lines[0]["type"] == "chat.exit" and lines[0]["reason"] == "failed"
    error = lines[0]["error"]
    assert isinstance(error, str) and "cannot reach the server" in error
    assert f"agent-runtime chat: {error}" in err


async def test_json_output_needs_a_message(root: Path) -> None:
    code, lines, _err = await run_json(options("http://127.0.0.1:1", root, output="json"))
    assert code == EXIT_USAGE
    assert lines == [
        {
            "type": "chat.exit",
            "code": EXIT_USAGE,
            "reason": "usage",
            "error": "--output json needs --message: it is for one-shot, scripted runs",
        }
    ]
    args: argparse.Namespace = chat_parser().parse_args(["--output", "json"])
    with pytest.raises(UsageError, match="needs --message"):
        options_from_args(args, {})
    parsed = options_from_args(chat_parser().parse_args(["-m", "hi", "--output", "json"]), {})
    assert parsed.output == "json"
    assert "130 interrupted" in chat_parser().format_help()
