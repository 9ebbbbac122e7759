"""The tool-executor seam: a mounted server-side executor serves a tool instead of the IDE.

The stand-in executor plays an MCP server: it answers ``read_file`` itself. Validation
and the modes' restrictions still apply before it sees a call.
"""

from __future__ import annotations

import attrs
import trio

from agents._tools import ToolCall, ToolCatalogue, TurnTools

from .harness import open_runtime, seqs_contiguous


@attrs.define
class EchoFiles:
    """A server-side executor: answers every call with the path it was asked for."""

    seen: list[ToolCall] = attrs.field(factory=list)

    async def call(self, turn: TurnTools, call: ToolCall) -> str | None:
        self.seen.append(call)
        path = call.arguments["path"]
        await turn.tool_result(call.call.call_id, True, f"contents of {path}", call.subtask_id)
        return None


async def test_a_mounted_executor_serves_its_tool_without_a_client_round_trip() -> None:
    echo = EchoFiles()
    tools = ToolCatalogue.builtin().mount(["read_file"], echo)
    async with open_runtime(tools=tools) as h:
        session = await h.session(agent="coder")
        await h.message(session, "read notes.md")
        with trio.fail_after(10):  # a bound: without the executor the turn would wait for an IDE
            ended = await h.wait_for(session, "turn.ended")
        assert ended.data["reason"] == "completed"
        events = await h.events(session)
        types = [e.type for e in events]
        assert "tool.call" not in types
        result = next(e for e in events if e.type == "tool.result")
        assert result.data["ok"] is True and "contents of notes.md" in str(result.data)
        assert [c.arguments["path"] for c in echo.seen] == ["notes.md"]
        assert seqs_contiguous(events)
        await h.assert_paired(session)


async def test_validation_runs_before_any_executor() -> None:
    echo = EchoFiles()
    tools = ToolCatalogue.builtin().mount(["read_file"], echo)
    async with open_runtime(tools=tools) as h:
        session = await h.session(agent="coder")
        await h.message(session, "read ../outside.txt")
        await h.wait_for(session, "turn.ended")
        result = next(e for e in await h.events(session) if e.type == "tool.result")
        assert result.data["ok"] is False
        assert echo.seen == []


def test_the_builtin_catalogue_covers_every_tool() -> None:
    from agents._core._tools import TOOLS
    from agents._tools import ControlTools, IdeTools

    catalogue = ToolCatalogue.builtin()
    assert set(catalogue.executors) == set(TOOLS)
    for name, tool in TOOLS.items():
        expected = IdeTools if tool.side == "ide" else ControlTools
        assert isinstance(catalogue.executor(name), expected), name
