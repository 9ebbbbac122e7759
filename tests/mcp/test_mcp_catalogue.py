"""Which executor answers an MCP call once the servers' configuration changed (in memory)."""

from __future__ import annotations

from agents._tools import ToolCatalogue
from sessions import open_memory_store
from tests.agents.harness import open_runtime
from tests.agents.test_mcp_turns import CALL, MODES, pool, runtime, turn_events


async def test_an_approval_after_a_restart_without_mcp_servers_fails_the_call_only() -> None:
    """The call waited for approval across a restart that removed every MCP server."""
    async with open_memory_store() as store:
        async with runtime(pool(trusted=False), store=store) as h:
            s = await h.session("librarian")
            await h.message(s, CALL)
            await h.wait_for(s, "approval.requested")
        async with open_runtime(tools=ToolCatalogue.builtin(), modes=MODES, store=store) as h2:
            await h2.approve_next(s)
            events = await turn_events(h2, s.id)
            result = next(d for t, d in events if t == "tool.result")
            assert (result["ok"], result["content"]) == (False, "no MCP server 'docs'")
            assert "error" not in [t for t, _ in events]
            assert dict(events)["turn.ended"]["reason"] == "completed"
            await h2.assert_paired(s)
