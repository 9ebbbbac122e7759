"""Slash commands: parsing, and what the dispatcher sends, shows and changes."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import httpx
import pytest

from server.chat._input import Decider
from server.chat._journal import Journal, journaled
from server.chat._render import Renderer
from server.chat._slash import (
    COMMANDS,
    Handled,
    Parsed,
    Quit,
    SlashCommands,
    StartedTurn,
    SwitchSession,
    _when,
    message_text,
    parse,
)
from server.chat._tools import Workspace
from sessions import JSON, JSONObject

EVENTS: list[JSON] = [
    {"type": "usage", "prompt_tokens": 100, "completion_tokens": 10, "cost": 0.5},
    {"type": "text.delta", "text": "hi"},
    {"type": "usage", "prompt_tokens": 20, "completion_tokens": 2, "cost": 0.25, "estimated": True},
]


def handler(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v1/agents":
        return httpx.Response(200, json={"agents": [{"name": "coder", "description": "codes"}]})
    if request.url.path == "/v1/sessions/ses_other":
        return httpx.Response(200, json={"id": "ses_other"})
    if request.url.path == "/v1/sessions":
        sessions = [{"id": "ses_new", "title": "newest"}, {"id": "ses_me", "title": "mine"}]
        return httpx.Response(200, json={"sessions": sessions, "next_cursor": None})
    if request.url.path.endswith("/events"):  # two pages: the sum covers both
        after = int(request.url.params["after"])
        page = EVENTS[after : after + 2]
        more = after + 2 < len(EVENTS)
        return httpx.Response(200, json={"events": page, "next_after": after + 2, "has_more": more})
    return httpx.Response(404)


class Fixture:
    def __init__(self, root: Path, ack: JSONObject) -> None:
        self.out = io.StringIO()
        self.renderer = Renderer(self.out)
        self.workspace = Workspace(root)
        self.decider = Decider(self.renderer, self.workspace)
        self.journal = Journal(self.workspace, "ses_me")
        self.sent: list[JSONObject] = []
        self.ack = ack
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://x")
        self.slash = SlashCommands(
            self.renderer, http, "ses_me", self.send, self.decider, self.journal
        )

    async def send(self, fields: JSONObject) -> JSONObject:
        self.sent.append(fields)
        return self.ack

    async def run(self, line: str) -> str:
        parsed = parse(line)
        assert parsed is not None
        self.out.seek(0)
        self.out.truncate()
        await self.slash.run(parsed)
        return self.out.getvalue()


@pytest.fixture
def fx(tmp_path: Path) -> Fixture:
    return Fixture(tmp_path, {"status": "accepted"})


def test_parse() -> None:
    assert parse("hello /world") is None
    assert parse("  /Undo 2 ") == Parsed("/undo", "2")
    assert parse("/auto-approve  read_*") == Parsed("/auto-approve", "read_*")
    assert parse("//etc/hosts is a file") is None
    assert message_text("//etc/hosts") == "/etc/hosts"
    assert message_text(" plain ") == "plain"


async def test_help_lists_every_command(fx: Fixture) -> None:
    shown = await fx.run("/help")
    for command in COMMANDS:
        assert f"{command.name} {command.usage}".strip() in shown
    assert "Esc then Enter" in shown
    assert "Ctrl-C cancels a turn or clears the line (quits on an empty one)" in shown
    assert "Ctrl-D or /quit exits" in shown


async def test_unknown_commands_get_a_hint_and_send_nothing(fx: Fixture) -> None:
    assert "unknown command /frob; /help lists them" in await fx.run("/frob x")
    assert fx.sent == []


async def test_server_commands_go_out_as_commands(fx: Fixture) -> None:
    assert "[agent: coder]" in await fx.run("/agent coder")
    assert "[model: the default]" in await fx.run("/model default")
    await fx.run("/model gpt-x")
    assert fx.sent == [
        {"type": "switch_agent", "agent": "coder"},
        {"type": "switch_model", "model": None},
        {"type": "switch_model", "model": "gpt-x"},
    ]


async def test_compact_waits_for_its_turn_or_says_it_is_unsupported(tmp_path: Path) -> None:
    fx = Fixture(tmp_path, {"status": "accepted", "turn_id": "turn_9"})
    parsed = parse("/compact keep the file list")
    assert parsed is not None
    assert await fx.slash.run(parsed) == StartedTurn("turn_9")
    assert fx.sent == [{"type": "compact", "instructions": "keep the file list"}]
    old = Fixture(tmp_path, {"status": "rejected", "code": "unknown_command", "error": "?"})
    assert "/compact is not supported by this server" in await old.run("/compact")


async def test_quit_and_listing_commands(fx: Fixture) -> None:
    assert await fx.slash.run(Parsed("/quit", "")) == Quit()
    assert await fx.slash.run(Parsed("/exit", "")) == Quit()
    assert await fx.slash.run(Parsed("/help", "")) == Handled()
    shown = await fx.run("/sessions")
    assert shown.index("  ses_new") < shown.index("* ses_me")  # newest first, ours marked
    assert "coder: codes" in await fx.run("/agent")
    assert fx.slash.agent_names == ["coder"]
    assert await fx.slash.run(Parsed("/session", "ses_other")) == SwitchSession("ses_other")
    assert await fx.slash.run(Parsed("/new", "")) == SwitchSession(None)
    assert "already in session ses_me" in await fx.run("/session ses_me")
    assert "no session ses_gone (see /sessions)" in await fx.run("/session ses_gone")
    assert "usage: /session ID" in await fx.run("/session no/pe")


async def test_cost_sums_the_usage_events_of_every_page(fx: Fixture) -> None:
    shown = await fx.run("/cost")
    assert "2 model calls, tokens 120 in (0 cached) / 12 out, $0.7500" in shown
    assert "(1 call estimated: cut mid-answer)" in shown


async def test_auto_approve_is_applied_by_the_decider(fx: Fixture) -> None:
    assert fx.decider.automatic("write_file") is None
    shown = await fx.run("/auto-approve write_*")
    assert "auto-approving tools matching write_*" in shown
    assert "/auto-approve write_*" in shown  # the rules now in force
    assert fx.decider.automatic("write_file") == "/auto-approve write_*"
    assert fx.decider.automatic("delete_file") is None
    answer = await fx.decider.approval({"call_id": "c1", "name": "write_file", "arguments": {}})
    assert answer == {"type": "approval", "call_id": "c1", "decision": "approve", "by": "policy"}


async def test_undo_and_diff_through_the_dispatcher(fx: Fixture) -> None:
    (fx.workspace.root / "f.txt").write_text("before\n")
    args: JSONObject = {"path": "f.txt", "content": "after\n"}
    await journaled(
        fx.journal, "t1", "c1", "write_file", args, lambda: fx.workspace.execute("write_file", args)
    )
    diff = await fx.run("/diff")
    assert "--- a/f.txt" in diff and "-before" in diff and "+after" in diff
    shown = await fx.run("/undo")
    assert "undid the file changes of 1 turn: t1" in shown and "restored f.txt" in shown
    assert (fx.workspace.root / "f.txt").read_text() == "before\n"
    assert "no files" in await fx.run("/diff")
    assert "nothing to undo" in await fx.run("/undo")
    assert "usage: /undo [N]" in await fx.run("/undo zero")


async def test_session_stays_here_when_the_server_refuses_or_fails(fx: Fixture) -> None:
    def refusing(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/sessions/ses_locked":
            body = {"error": {"code": "forbidden", "message": "not yours"}}
            return httpx.Response(403, json=body)
        if request.url.path == "/v1/sessions/ses_busy":
            return httpx.Response(503, json={"error": {"code": "draining", "message": "later"}})
        return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "expired"}})

    fx.slash.http = httpx.AsyncClient(transport=httpx.MockTransport(refusing), base_url="http://x")
    for session_id, shown in [
        ("ses_locked", "not yours (HTTP 403 forbidden)"),
        ("ses_busy", "later (HTTP 503 draining)"),
        ("ses_other", "the server refused the token (HTTP 401 unauthorized: expired)"),
    ]:
        assert await fx.slash.run(Parsed("/session", session_id)) == Handled()
        assert f"! /session {session_id} failed: {shown}" in fx.out.getvalue()


async def journal_a_write(fx: Fixture) -> None:
    (fx.workspace.root / "f.txt").write_text("before\n")
    args: JSONObject = {"path": "f.txt", "content": "after\n"}
    await journaled(
        fx.journal, "t1", "c1", "write_file", args, lambda: fx.workspace.execute("write_file", args)
    )


async def test_diff_and_undo_report_a_damaged_journal_in_one_line(fx: Fixture) -> None:
    await journal_a_write(fx)
    blobs = fx.journal.dir / "blobs"
    for name in os.listdir(blobs):
        (blobs / name).unlink()
    shown = await fx.run("/diff")
    assert shown.startswith("! /diff failed: ") and shown.count("\n") == 1
    assert "Traceback" not in shown
    shown = await fx.run("/undo")
    assert "! /undo refused: the saved copy of f.txt cannot be used" in shown
    assert (fx.workspace.root / "f.txt").read_text() == "after\n"


async def test_undo_drops_an_entry_with_an_impossible_mode_and_says_so(fx: Fixture) -> None:
    await journal_a_write(fx)
    index = fx.journal.dir / "index.json"
    data = json.loads(index.read_text())
    data["turns"][0]["entries"][0]["changes"][0]["before"]["mode"] = 2**70
    index.write_text(json.dumps(data))
    shown = await fx.run("/undo")
    assert "nothing to undo" in shown
    assert f"invalid mode {2**70}" in shown
    assert (fx.workspace.root / "f.txt").read_text() == "after\n"


def test_a_timestamp_out_of_range_shows_as_unknown() -> None:
    assert _when(2**70) == "?"
    assert _when(-1e18) == "?"
    assert _when(float("nan")) == "?"
    assert _when(0) != "?"
