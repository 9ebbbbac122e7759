"""The chat client sends its workspace's AGENTS.md (or the like) as the session's instructions."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import trio

from server.chat import ChatOptions, chat_main, chat_parser, options_from_args
from server.chat._instructions import MAX_INSTRUCTIONS_BYTES, read_instructions
from tests.server.helpers import ALICE, STEP, LiveServer


class NoLines:
    """A human who ends the input at once (the client connects, then exits)."""

    async def readline(self) -> str | None:
        await trio.lowlevel.checkpoint()
        return None


def _options(server: LiveServer, root: Path, **overrides: Any) -> ChatOptions:
    base: dict[str, Any] = {
        "url": server.url,
        "token": ALICE,
        "workspace": root,
        "handle_signals": False,
        "backoff": 0.01,
    }
    base.update(overrides)
    return ChatOptions(**base)


async def _chat(opts: ChatOptions) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with trio.fail_after(4 * STEP):
        code = await chat_main(opts, out=out, err=err, env={}, lines=NoLines())
    return code, out.getvalue(), err.getvalue()


async def _sessions(server: LiveServer) -> list[dict[str, Any]]:
    async with server.http() as http:
        sessions: list[dict[str, Any]] = (await http.get("/v1/sessions")).json()["sessions"]
    return sessions


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


async def test_the_client_sends_agents_md_when_it_creates_the_session(
    server: LiveServer, root: Path
) -> None:
    (root / "AGENTS.md").write_text("Use tabs.\n", encoding="utf-8")
    code, out, err = await _chat(_options(server, root))
    assert code == 0, out + err
    assert "[project instructions: AGENTS.md]" in out
    assert err == ""
    [session] = await _sessions(server)
    assert session["instructions"] == "Use tabs.\n"


async def test_agents_md_is_preferred_over_claude_md(server: LiveServer, root: Path) -> None:
    (root / "CLAUDE.md").write_text("from CLAUDE.md", encoding="utf-8")
    (root / "AGENTS.md").write_text("from AGENTS.md", encoding="utf-8")
    code, out, err = await _chat(_options(server, root))
    assert code == 0, out + err
    [session] = await _sessions(server)
    assert session["instructions"] == "from AGENTS.md"


async def test_resuming_a_session_sets_its_instructions_in_hello(
    server: LiveServer, root: Path
) -> None:
    session_id = await server.new_session(instructions="old")
    (root / ".agent-runtime").mkdir()
    (root / ".agent-runtime" / "instructions.md").write_text("new", encoding="utf-8")
    code, out, err = await _chat(_options(server, root, session=session_id))
    assert code == 0, out + err
    [session] = await _sessions(server)
    assert (session["id"], session["instructions"]) == (session_id, "new")


async def test_no_instructions_flag_sends_none(server: LiveServer, root: Path) -> None:
    (root / "AGENTS.md").write_text("Use tabs.", encoding="utf-8")
    options = options_from_args(chat_parser().parse_args(["--no-instructions"]), {})
    assert options.send_instructions is False
    assert options_from_args(chat_parser().parse_args([]), {}).send_instructions is True
    code, out, err = await _chat(_options(server, root, send_instructions=False))
    assert code == 0, out + err
    assert "project instructions" not in out
    [session] = await _sessions(server)
    assert session["instructions"] is None


async def test_a_too_large_file_is_cut_with_a_warning(server: LiveServer, root: Path) -> None:
    # A two-byte character straddles the cut: it is dropped whole, not split.
    text = "a" * (MAX_INSTRUCTIONS_BYTES - 1) + "é" + "tail"
    (root / "CLAUDE.md").write_text(text, encoding="utf-8")
    code, out, err = await _chat(_options(server, root))
    assert code == 0, out + err
    assert "warning: CLAUDE.md is larger than 65536 bytes" in err
    [session] = await _sessions(server)
    assert session["instructions"] == "a" * (MAX_INSTRUCTIONS_BYTES - 1)


async def test_a_file_that_is_not_utf8_is_skipped(server: LiveServer, root: Path) -> None:
    (root / "AGENTS.md").write_bytes(b"caf\xe9 latin-1\n")
    (root / "CLAUDE.md").write_text("the fallback", encoding="utf-8")
    code, out, err = await _chat(_options(server, root))
    assert code == 0, out + err
    assert "warning: AGENTS.md is not UTF-8 text; not sending it" in err
    [session] = await _sessions(server)
    assert session["instructions"] == "the fallback"


def test_reading_the_instruction_files(tmp_path: Path) -> None:
    warnings: list[str] = []
    assert read_instructions(tmp_path, warnings.append) == (None, None)
    (tmp_path / "AGENTS.md").mkdir()  # not a file: ignored
    (tmp_path / "CLAUDE.md").write_bytes("\ufeffwith a BOM".encode())
    assert read_instructions(tmp_path, warnings.append) == ("CLAUDE.md", "with a BOM")
    (tmp_path / "CLAUDE.md").write_bytes(b"nul\x00byte")
    assert read_instructions(tmp_path, warnings.append) == (None, None)
    assert warnings == ["CLAUDE.md is not UTF-8 text; not sending it"]
    (tmp_path / "CLAUDE.md").write_bytes(b"x" * (MAX_INSTRUCTIONS_BYTES + 10))
    name, text = read_instructions(tmp_path, warnings.append)
    assert (name, text) == ("CLAUDE.md", "x" * MAX_INSTRUCTIONS_BYTES)
    assert "sending only its first 65536 bytes" in warnings[-1]


def test_an_instructions_file_linking_outside_the_workspace_is_not_sent(tmp_path: Path) -> None:
    """A cloned repository's ``AGENTS.md -> ~/.aws/credentials`` would go to the model."""
    root = tmp_path / "ws"
    root.mkdir()
    secret = tmp_path / "credentials"
    secret.write_text("SECRET")
    (root / "AGENTS.md").symlink_to(secret)
    outside_dir = tmp_path / "elsewhere"
    outside_dir.mkdir()
    (outside_dir / "instructions.md").write_text("SECRET TOO")
    (root / ".agent-runtime").symlink_to(outside_dir, target_is_directory=True)
    (root / "CLAUDE.md").symlink_to(root / "rules.md")
    (root / "rules.md").write_text("inside: fine")
    warnings: list[str] = []
    assert read_instructions(root, warnings.append) == ("CLAUDE.md", "inside: fine")
    assert warnings == [f"AGENTS.md links outside the workspace (to {secret}); not sending it"]
    (root / "CLAUDE.md").unlink()
    assert read_instructions(root, warnings.append) == (None, None)
    assert warnings[-1].startswith(".agent-runtime/instructions.md links outside the workspace")
