"""Defects found by probing ``agent-runtime chat``: planted symlinks, cut results, usage errors."""

from __future__ import annotations

import io
import json
import signal
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from agents._core._events import ToolResultEvent
from server.chat import run_chat
from server.chat._paths import STATE_DIR, state_dir
from server.chat._prompt import BoundedHistory, PromptInput, PromptSettings
from server.chat._render import Renderer
from sessions import JSON, JSONObject
from tests.chat.test_client import chat, options

# -- the prompt history never follows a planted symlink (report #3) --------------------


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the workspace that a planted symlink points at."""
    path = tmp_path / "victim.txt"
    path.write_text("victim original\n")
    return path


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


def test_a_real_history_file_is_bounded_and_a_symlink_in_its_place_is_never_written(
    ws: Path, victim: Path
) -> None:
    history = BoundedHistory(ws, limit=2)
    for line in ("one", "two\nlines", "three"):
        history.store_string(line)
    assert list(BoundedHistory(ws, limit=5).load_history_strings()) == [
        "three",
        "two\nlines",
        "one",
    ]
    assert list(BoundedHistory(ws, limit=2).load_history_strings()) == ["three", "two\nlines"]
    assert list(BoundedHistory(ws, limit=5).load_history_strings()) == ["three", "two\nlines"]
    assert (ws / STATE_DIR / ".gitignore").is_file()

    (ws / STATE_DIR / "history").unlink()
    (ws / STATE_DIR / "history").symlink_to(victim)
    planted = BoundedHistory(ws)
    planted.check()
    assert planted.take_notes() == [
        "[prompt history off for this run: .agent-runtime/history is a symlink (never "
        "followed); what you type is kept in memory only]"
    ]
    assert list(planted.load_history_strings()) == []
    planted.append_string("a secret typed by the user")
    assert planted.get_strings() == ["a secret typed by the user"]  # still in memory
    assert planted.take_notes() == []  # said once
    assert victim.read_text() == "victim original\n"


def test_a_symlinked_history_is_never_cut_when_loaded(ws: Path, victim: Path) -> None:
    entries = "".join(f"\n# date\n+entry {n}\n" for n in range(5))
    victim.write_text(entries)
    (ws / STATE_DIR).mkdir()
    (ws / STATE_DIR / "history").symlink_to(victim)
    history = BoundedHistory(ws, limit=2)
    assert list(history.load_history_strings()) == []
    assert victim.read_text() == entries
    assert len(history.take_notes()) == 1


def test_a_symlinked_state_folder_gets_neither_history_nor_gitignore(
    ws: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (ws / STATE_DIR).symlink_to(elsewhere)
    history = BoundedHistory(ws)
    history.store_string("hello typed by the user")
    assert history.take_notes() == [
        "[prompt history off for this run: .agent-runtime is a symlink (never followed); "
        "what you type is kept in memory only]"
    ]
    with pytest.raises(OSError):
        state_dir(ws)
    assert list(elsewhere.iterdir()) == []


async def test_the_prompt_reports_a_planted_history_link_once(ws: Path, victim: Path) -> None:
    (ws / STATE_DIR).mkdir()
    (ws / STATE_DIR / "history").symlink_to(victim)
    settings = PromptSettings(workspace=ws, commands=("/quit",), agents=lambda: [])
    prompts = PromptInput(settings)
    assert len(await prompts.notes()) == 1
    assert await prompts.notes() == []


# -- a long command result is shown as exit status and output (report #6) -------------


def _event(seq: int, type_: str, **payload: JSON) -> JSONObject:
    return {"seq": seq, "session_id": "s", "type": type_, "ts": 0.0, "turn_id": "t1", **payload}


def test_a_command_result_longer_than_its_summary_shows_exit_and_output() -> None:
    output = "".join(f"{n}\n" for n in range(1, 201))
    content = json.dumps({"exit_code": 2, "output": output, "truncated": False})
    result = ToolResultEvent.of("c1", True, content)  # as the server records it
    assert len(result.summary) < len(content)  # cut: no longer valid JSON
    out = io.StringIO()
    renderer = Renderer(out)
    arguments: JSON = {"command": "seq 1 200"}
    renderer.event(
        _event(1, "tool.call", call_id="c1", name="execute_command", arguments=arguments)
    )
    renderer.event(
        _event(2, "tool.result", call_id="c1", ok=True, summary=result.summary, content=content)
    )
    shown = out.getvalue()
    assert "= ok: exit 2\n  1\n  2\n  3\n  ... (197 more lines)" in shown, shown
    assert "exit_code" not in shown


# -- usage errors: --output json's last line, --url without a host (#7, #8) ----------


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["-m", "   "], {}, "--message is empty"),
        (["-m", "hi"], {"AGENT_RUNTIME_COMMAND_TIMEOUT": "abc"}, "'abc' is not a number"),
    ],
)
async def test_an_option_usage_error_still_ends_json_output_with_chat_exit(
    argv: list[str],
    env: dict[str, str],
    expected: str,
    ws: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    base = ["--output", "json", "--token", "t", "--workspace", str(ws)]
    assert await run_chat([*base, *argv]) == 2
    captured = capsys.readouterr()
    last = json.loads(captured.out.splitlines()[-1])
    assert last["type"] == "chat.exit" and last["code"] == 2 and last["reason"] == "usage"
    assert expected in last["error"], last
    assert expected in captured.err


@pytest.mark.parametrize("url", ["http://", "https:///", "ws://"])
async def test_a_url_without_a_host_is_a_usage_error_of_url(
    url: str, ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_chat(["--url", url, "--token", "t", "--workspace", str(ws), "-m", "hi"]) == 2
    err = capsys.readouterr().err
    assert "must be an http(s):// or ws(s):// URL with a host" in err, err
    assert err.startswith("agent-runtime chat: --url: ")


# -- --session against a server that is not agent-runtime (#9) -----------------------


async def _plain_not_found(stream: trio.SocketStream) -> None:
    """What ``python3 -m http.server`` answers for an API path: a bare 404."""
    async with stream:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            request += chunk
        await stream.send_all(
            b"HTTP/1.1 404 File not found\r\nContent-Type: text/html\r\n"
            b"Content-Length: 9\r\nConnection: close\r\n\r\nnot found"
        )


async def test_a_bare_404_for_session_says_it_is_not_agent_runtime(
    nursery: trio.Nursery, ws: Path
) -> None:
    serve = partial(trio.serve_tcp, _plain_not_found, 0, host="127.0.0.1")
    listeners: list[trio.SocketListener] = await nursery.start(serve)
    port = listeners[0].socket.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    code, out = await chat(options(url, ws, session="ses_abc", message="hi"))
    assert code == 1
    assert out.strip() == (
        f"agent-runtime chat: GET {url}/v1/sessions/ses_abc answered HTTP 404 File not found; "
        "is it an agent-runtime server? (check --url)"
    ), out


# -- Ctrl-C at the chat prompt clears a typed line (#10) ------------------------------


async def _prompt_with_keys(ws: Path, keys: str) -> tuple[str | None, list[object]]:
    """What the chat prompt returns for *keys* typed, and the SIGINTs it sent meanwhile.

    The prompt runs on a pipe, not a terminal; a SIGINT it sends (Ctrl-C on an empty
    line) ends the prompt here, as quitting would in the client.
    """
    settings = PromptSettings(workspace=ws, commands=("/quit",), agents=lambda: [])
    line: list[str | None] = []
    interrupts: list[object] = []
    with (
        trio.fail_after(30),
        create_pipe_input() as typed,
        create_app_session(input=typed, output=DummyOutput()),
        trio.open_signal_receiver(signal.SIGINT) as signals,
    ):
        prompts = PromptInput(settings)
        async with trio.open_nursery() as nursery:

            async def prompt() -> None:
                line.append(await prompts.prompt("you> ", chat=True))
                nursery.cancel_scope.cancel()

            async def interrupted() -> None:
                async for signum in signals:
                    interrupts.append(signum)
                    nursery.cancel_scope.cancel()

            nursery.start_soon(prompt)
            nursery.start_soon(interrupted)
            typed.send_text(keys)
    return (line[0] if line else None), interrupts


async def test_ctrl_c_clears_a_typed_line_and_quits_from_an_empty_one(ws: Path) -> None:
    assert await _prompt_with_keys(ws, "some half typed\x03what I meant\r") == (
        "what I meant",
        [],
    )
    assert await _prompt_with_keys(ws, "\x03") == (None, [signal.SIGINT])
