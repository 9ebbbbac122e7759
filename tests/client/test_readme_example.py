"""The README's ten-line IDE-side executor works as written, against a real server."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from tests.server.helpers import ALICE, STEP, ended, make_config, start_server
from tests.server.test_readme_commands import ROOT, code_blocks

Executor = Callable[[str, str, str], Awaitable[None]]


def readme_executor() -> Executor:
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme[readme.index("## Python client library") :]
    namespace: dict[str, object] = {}
    exec(code_blocks(section, "python")[0], namespace)  # the example, verbatim
    executor = namespace["executor"]
    assert callable(executor)
    return executor


async def test_the_readme_executor_answers_a_read_file_call(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "notes.md").write_text("the notes", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # the example reads paths relative to where it runs
    server = await start_server(nursery, make_config())
    session_id = await server.new_session(agent="coder")
    async with trio.open_nursery() as inner:
        inner.start_soon(readme_executor(), server.url, ALICE, session_id)
        async with server.ws(session_id) as observer:  # a second client, watching
            await observer.command({"type": "user_message", "id": "m", "content": "read notes.md"})
            with trio.fail_after(STEP):
                events = await observer.until(ended)
        inner.cancel_scope.cancel()
    result = next(e for e in events if e["type"] == "tool.result")
    assert result["ok"] is True and result["content"] == "the notes"
    assert os.getcwd() == str(tmp_path)
