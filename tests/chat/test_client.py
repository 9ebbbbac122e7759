"""The terminal chat client against the real server (in-process, scripted model, port 0)."""

from __future__ import annotations

import io
import re
import shlex
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from server.chat import (
    EXIT_NOT_APPROVED,
    ChatOptions,
    Workspace,
    chat_main,
    http_url,
    options_from_args,
)
from server.chat._state import ChatState
from sessions import JSON, JSONObject
from tests.server.helpers import (
    ALICE,
    STEP,
    LiveServer,
    WsClient,
    make_config,
    small_limits,
    start_server,
)

# A chat run is a whole conversation; bound it generously but finitely.
RUN_LIMIT = 4 * STEP


class CountingWorkspace(Workspace):
    """Counts executions per (tool, target) and can act on each one (e.g. drop the link)."""

    def __init__(self, root: Path, on_execute: Callable[[str], None] | None = None) -> None:
        super().__init__(root)
        self.calls: Counter[str] = Counter()
        self.on_execute = on_execute

    async def execute(
        self, name: str, arguments: JSONObject, *, stop: trio.Event | None = None
    ) -> JSON:
        key = f"{name}:{arguments.get('path', arguments.get('command', ''))}"
        self.calls[key] += 1
        if self.on_execute is not None:
            self.on_execute(key)
        return await super().execute(name, arguments, stop=stop)


class ScriptedLines:
    """The human at the keyboard, typing the given lines in order, then end of input."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.lines = deque(lines)

    async def readline(self) -> str | None:
        await trio.lowlevel.checkpoint()
        return self.lines.popleft() if self.lines else None


def options(server_url: str, root: Path, **overrides: Any) -> ChatOptions:
    base: dict[str, Any] = {
        "url": server_url,
        "token": ALICE,
        "workspace": root,
        "handle_signals": False,
        "backoff": 0.01,
    }
    base.update(overrides)
    return ChatOptions(**base)


async def chat(opts: ChatOptions, **kwargs: Any) -> tuple[int, str]:
    out = io.StringIO()
    with trio.fail_after(RUN_LIMIT):
        code = await chat_main(opts, out=out, err=out, env={}, **kwargs)
    return code, out.getvalue()


def names(directory: Path) -> list[str]:
    # .agent-runtime/ holds the client's own journal (for /undo), not the agent's work.
    return sorted(p.name for p in directory.iterdir() if p.name != ".agent-runtime")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


async def test_message_with_yes_creates_the_file(server: LiveServer, root: Path) -> None:
    message = "create hello.py with print('hi')"
    code, out = await chat(options(server.url, root, message=message, yes=True))
    assert code == 0, out
    assert (root / "hello.py").read_text() == "print('hi')"
    assert "[agent orchestrator -> coder" in out
    assert "approving write_file (--yes)" in out
    assert "== turn completed" in out
    assert "\x1b[" not in out  # not a terminal: no ANSI


async def test_without_approval_the_workspace_is_untouched(server: LiveServer, root: Path) -> None:
    code, out = await chat(options(server.url, root, message="create nope.txt with x"))
    # The turn completes (the agent hears the refusal), but CI must notice.
    assert code == EXIT_NOT_APPROVED, out
    assert names(root) == []
    assert "approval rejected (by policy): non-interactive" in out
    assert "pass --yes or --auto-approve write_file" in out
    assert "(by user)" not in out


async def test_auto_approve_globs(server: LiveServer, root: Path) -> None:
    opts = options(server.url, root, message="create a.txt with A", auto_approve=("read_*",))
    code, out = await chat(opts)
    assert code == EXIT_NOT_APPROVED
    assert not (root / "a.txt").exists()
    opts = options(server.url, root, message="create a.txt with A", auto_approve=("write_*",))
    code, out = await chat(opts)
    assert code == 0, out
    assert (root / "a.txt").read_text() == "A"
    assert "approving write_file (--auto-approve write_*)" in out
    assert "approval approved (by policy)" in out


async def test_path_escape_is_refused(server: LiveServer, root: Path, tmp_path: Path) -> None:
    workspace = CountingWorkspace(root)
    opts = options(server.url, root, message="create ../evil.txt with x", yes=True)
    code, out = await chat(opts, workspace=workspace)
    assert code == 0, out
    assert "escapes the workspace" in out
    assert not (tmp_path / "evil.txt").exists()
    assert workspace.calls == Counter()  # the runtime refused before sending a tool.call


async def test_tool_errors_and_commands_are_reported(server: LiveServer, root: Path) -> None:
    (root / "m.py").write_text("x = 1\n")
    opts = options(server.url, root, message="edit m.py replace y with z", yes=True)
    code, out = await chat(opts)
    assert code == 0
    assert "= failed: error: apply_diff: search text not found in m.py" in out
    code, out = await chat(options(server.url, root, message="run echo hello", yes=True))
    assert code == 0, out
    assert "= ok: exit 0\n  hello" in out


async def test_subtask_events_are_indented(server: LiveServer, root: Path) -> None:
    (root / "a.txt").write_text("alpha")
    message = "first read a.txt then create b.txt with beta"
    code, out = await chat(options(server.url, root, message=message, yes=True))
    assert code == 0, out
    assert "+ subtask (coder): read a.txt\n    coder: Reading a.txt." in out
    assert "    > read_file a.txt\n    = ok: alpha" in out
    assert "\n+ subtask done:" in out
    assert (root / "b.txt").read_text() == "beta"


async def test_non_interactive_question_gets_a_fixed_answer(server: LiveServer, root: Path) -> None:
    code, out = await chat(options(server.url, root, message="ask which colour?"))
    assert code == 0, out
    assert "? question: which colour?" in out
    assert "answer: no answer (non-interactive client)" in out


async def test_resume_skips_calls_answered_before(server: LiveServer, root: Path) -> None:
    first = CountingWorkspace(root)
    code, _ = await chat(options(server.url, root, message="mkdir src", yes=True), workspace=first)
    assert code == 0
    assert first.calls == Counter({"create_directory:src": 1})
    async with server.http() as http:
        sessions = (await http.get("/v1/sessions")).json()["sessions"]
    session_id = sessions[0]["id"]

    second = CountingWorkspace(root)
    opts = options(server.url, root, session=session_id, message="list src", yes=True)
    code, out = await chat(opts, workspace=second)
    assert code == 0, out
    assert second.calls == Counter({"list_files:src": 1})  # the old call is not re-run
    assert "you> mkdir src" in out  # the history was replayed and rendered


async def test_pending_tool_call_from_the_log_is_handled(server: LiveServer, root: Path) -> None:
    (root / "notes.txt").write_text("remember")
    session_id = await server.new_session()
    async with server.ws(session_id) as ide:
        await _send(ide, {"type": "user_message", "id": "m1", "content": "read notes.txt"})
        await ide.until_type("tool.call")
    # That IDE went away without answering; the chat client picks the call up.
    workspace = CountingWorkspace(root)
    opts = options(server.url, root, session=session_id, message="list", yes=True)
    code, out = await chat(opts, workspace=workspace)
    assert code == 0, out
    assert workspace.calls == Counter({"read_file:notes.txt": 1, "list_files:.": 1})
    assert "= ok: remember" in out


async def _send(ide: WsClient, frame: JSONObject) -> None:
    ack = await ide.command(frame)
    assert ack["status"] == "accepted", ack


class DroppingProxy:
    """A TCP proxy in front of the server whose connections the test can cut at will."""

    def __init__(self, target: str) -> None:
        host, _, port = target.removeprefix("http://").rpartition(":")
        self.host, self.port = host, int(port)
        self.url = ""
        self.accepted = 0
        self.dropped = 0
        self._scopes: set[trio.CancelScope] = set()

    async def start(self, nursery: trio.Nursery) -> None:
        listeners = await nursery.start(partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def drop_all(self) -> None:
        """Cut every open connection (as a network failure would)."""
        for scope in list(self._scopes):
            scope.cancel()
            self.dropped += 1

    async def _handle(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        scope = trio.CancelScope()
        self._scopes.add(scope)
        try:
            with scope:
                async with client, await trio.open_tcp_stream(self.host, self.port) as upstream:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(_pipe, client, upstream, nursery.cancel_scope)
                        nursery.start_soon(_pipe, upstream, client, nursery.cancel_scope)
        finally:
            self._scopes.discard(scope)


async def _pipe(source: trio.SocketStream, sink: trio.SocketStream, done: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    done.cancel()


async def test_reconnect_mid_turn_runs_each_call_once(
    server: LiveServer, root: Path, nursery: trio.Nursery
) -> None:
    proxy = DroppingProxy(server.url)
    await proxy.start(nursery)

    def drop_on_first(key: str) -> None:
        if proxy.dropped == 0:
            proxy.drop_all()

    workspace = CountingWorkspace(root, on_execute=drop_on_first)
    message = "create a.txt with 1 and create b.txt with 2"
    code, out = await chat(options(proxy.url, root, message=message, yes=True), workspace=workspace)
    assert code == 0, out
    assert proxy.dropped >= 1
    assert "[connection lost" in out
    assert workspace.calls == Counter({"write_file:a.txt": 1, "write_file:b.txt": 1})
    assert (root / "a.txt").read_text() == "1"
    assert (root / "b.txt").read_text() == "2"
    assert out.count("== turn completed") == 1
    # Every event was rendered once: no replayed duplicates after the reconnect.
    assert out.count("> write_file a.txt") == 1
    assert out.count("> write_file b.txt") == 1


async def test_reconnect_while_waiting_for_approval(
    server: LiveServer, root: Path, nursery: trio.Nursery
) -> None:
    proxy = DroppingProxy(server.url)
    await proxy.start(nursery)

    class DroppingLines(ScriptedLines):
        async def readline(self) -> str | None:
            if self.lines and self.lines[0] == "a" and proxy.dropped == 0:
                proxy.drop_all()  # the link dies while the human decides
            return await super().readline()

    human = DroppingLines(["create c.txt with 3", "a", "/quit"])
    workspace = CountingWorkspace(root)
    code, out = await chat(options(proxy.url, root), lines=human, workspace=workspace)
    assert code == 0, out
    assert proxy.dropped >= 1
    assert workspace.calls == Counter({"write_file:c.txt": 1})
    assert (root / "c.txt").read_text() == "3"
    assert out.count("[a]pprove") == 1


async def test_max_steps_exits_with_failure(server: LiveServer, root: Path) -> None:
    code, out = await chat(options(server.url, root, message="loop", yes=True))
    assert code == 1
    assert "== turn max_steps" in out


async def test_agent_option_picks_the_agent(server: LiveServer, root: Path) -> None:
    (root / "a.txt").write_text("A")
    code, out = await chat(options(server.url, root, message="read a.txt", agent="ask"))
    assert code == 0, out
    assert "[turn started: ask]" in out
    assert "= ok: A" in out


async def test_rate_limited_commands_are_sent_again(nursery: trio.Nursery, root: Path) -> None:
    limited = await start_server(nursery, make_config(limits=small_limits(commands_per_second=1.0)))
    message = "create a.txt with 1 and create b.txt with 2"
    code, out = await chat(options(limited.url, root, message=message, yes=True))
    assert code == 0, out
    assert (root / "a.txt").read_text() == "1"
    assert (root / "b.txt").read_text() == "2"


EDITOR = """
import json, sys
with open(sys.argv[1]) as file:
    arguments = json.load(file)
arguments["path"] = "edited-" + arguments["path"]
with open(sys.argv[1], "w") as file:
    json.dump(arguments, file)
"""


async def test_edit_in_editor(server: LiveServer, root: Path, tmp_path: Path) -> None:
    script = tmp_path / "editor.py"
    script.write_text(EDITOR)
    human = ScriptedLines(["create plain.txt with text", "e", "/quit"])
    env = {"EDITOR": f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"}
    out = io.StringIO()
    with trio.fail_after(RUN_LIMIT):
        code = await chat_main(options(server.url, root), out=out, err=out, env=env, lines=human)
    assert code == 0, out.getvalue()
    assert names(root) == ["edited-plain.txt"]
    assert (root / "edited-plain.txt").read_text() == "text"


def _event(seq: int, type_: str, **payload: JSON) -> JSONObject:
    return {"seq": seq, "session_id": "s", "type": type_, "ts": 0.0, "turn_id": "t1", **payload}


async def test_state_hands_out_only_unanswered_open_work() -> None:
    state = ChatState()
    state.catching_up = True
    state.record(_event(1, "turn.started", agent="coder"))
    state.record(_event(2, "tool.call", call_id="c1", name="read_file", arguments={}))
    state.record(_event(3, "tool.result", call_id="c1", ok=True, summary="", content=""))
    state.record(_event(4, "tool.call", call_id="c2", name="read_file", arguments={}))
    state.record(_event(5, "approval.requested", call_id="c3", name="write_file"))
    assert state.running_turn == "t1"
    with trio.move_on_after(0) as scope:
        await state.next_work()  # nothing is handed out while catching up
    assert scope.cancelled_caught
    state.catching_up = False
    state.changed()
    first = await state.next_work()
    assert (first.kind, first.id) == ("call", "c2")  # c1 was answered in the log
    second = await state.next_work()
    assert (second.kind, second.id) == ("approval", "c3")
    state.done(first)
    state.record(_event(6, "turn.ended", reason="cancelled"))
    assert state.open == {}
    assert state.ended == {"t1": "cancelled"}
    state.done(second)  # the worker gives up on an approval whose turn ended
    assert state.idle
    assert state.last_seq == 6


def test_options_from_arguments() -> None:
    import argparse

    from server.chat import add_chat_arguments

    parser = argparse.ArgumentParser()
    add_chat_arguments(parser)
    args = parser.parse_args(
        ["--auto-approve", "write_file, read_*", "--auto-approve", "list_files", "-m", "hi"]
    )
    opts = options_from_args(args, {"AGENT_RUNTIME_TOKEN": "tok", "AGENT_RUNTIME_URL": "h:1"})
    assert opts.auto_approve == ("write_file", "read_*", "list_files")
    assert opts.token == "tok"
    assert opts.url == "h:1"
    assert not opts.interactive
    assert http_url("h:1/") == "http://h:1"
    assert http_url("wss://example.org") == "https://example.org"


async def test_interactive_edit_reject_session_and_answer(server: LiveServer, root: Path) -> None:
    human = ScriptedLines(
        [
            "create x.txt with one",
            "e",  # edit: no $EDITOR, so an inline JSON prompt
            '{"path": "y.txt", "content": "two"}',
            "create q.txt with no",
            "r",
            "not now",
            "create z.txt with three",
            "s",  # approve for the session: the next write is not asked
            "create w.txt with four",
            "ask favourite colour?",
            "blue",
            "/quit",
            "never read",
        ]
    )
    code, out = await chat(options(server.url, root), lines=human)
    assert code == 0, out
    assert names(root) == ["w.txt", "y.txt", "z.txt"]
    assert (root / "y.txt").read_text() == "two"
    assert "approval approved with edited arguments (by user)" in out
    assert "approval rejected (by user): not now" in out
    assert out.count("[a]pprove") == 3  # x (edited), q (rejected), z; w was remembered
    assert "> write_file w.txt (4 bytes) (auto-approved: session rule for write_file)" in out
    assert "> write_file z.txt (5 bytes)\n" in out  # a person approved that one
    assert "= ok: blue" in out
    assert list(human.lines) == ["never read"]
    assert "+++ b/x.txt" in out  # the diff preview of the first write


async def test_interactive_end_of_input_exits(server: LiveServer, root: Path) -> None:
    code, out = await chat(options(server.url, root), lines=ScriptedLines([]))
    assert code == 0
    assert "[session ses_" in out
    # The start-up hint says what Ctrl-C does at the prompt now: it clears the line.
    hint = next(line for line in out.splitlines() if line.startswith("[type a message"))
    assert "Ctrl-C cancels a turn or clears the line (quits on an empty one)" in hint, hint
    assert "Ctrl-D or /quit exits" in hint, hint


async def test_control_characters_in_a_file_are_shown_escaped(
    server: LiveServer, root: Path
) -> None:
    (root / "evil.txt").write_text("\x1b[2J\x1b[Hall clear\r\u202eexe.txt\n")
    code, out = await chat(options(server.url, root, message="read evil.txt"))
    assert code == 0, out
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]", out), repr(out)
    assert "= ok: \\x1b[2J\\x1b[Hall clear\\r\\u202eexe.txt" in out


async def test_an_approval_shows_exactly_what_would_run(server: LiveServer, root: Path) -> None:
    spoof = "touch PWNED_FILE \x1b[1K\r\x1b[2Cecho hello"
    human = ScriptedLines([f"run {spoof}", "r", "", "/quit"])
    code, out = await chat(options(server.url, root), lines=human)
    assert code == 0, out
    assert "\x1b" not in out and "\r" not in out, repr(out)
    assert (
        "    command (has control characters; shown escaped): "
        "'touch PWNED_FILE \\x1b[1K\\r\\x1b[2Cecho hello'\n[a]pprove"
    ) in out
    assert names(root) == []


async def test_command_timeout_option(server: LiveServer, root: Path) -> None:
    opts = options(server.url, root, message="run sleep 30", yes=True, command_timeout=0.3)
    with trio.fail_after(STEP):
        code, out = await chat(opts)
    assert code == 0, out
    assert "execute_command: timed out after 0.3 s; the command was killed" in out
