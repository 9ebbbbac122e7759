"""MCP tools in turns, on an in-memory pool of fake servers (the real ones: tests/mcp).

The turn records a server-side call as ``tool.started`` before it runs and its
``tool.result`` after; the approval policy decides first (the server's trust and
the tool's hints set the default); recovery resolves a call that was running
when the runtime stopped as failed, never running it again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import attrs
import trio
import trio.testing

from agents import Policy, RuntimeConfig, ScriptedModel, builtin_modes
from agents._core._mcp import McpOutcome, McpServerConfig, McpTool, StdioTransport, ToolHints
from agents._core._model import (
    FinishDelta,
    ModelDelta,
    ModelRequest,
    TextDelta,
    ToolCallDelta,
    ToolCallRequest,
)
from agents._errors import McpUnavailable
from agents._tools import McpTools, ToolCatalogue
from agents.testing import parse_modes, parse_policy
from sessions import (
    Append,
    JSONObject,
    NewEvent,
    SessionStore,
    TurnStatus,
    now,
    open_memory_store,
)
from sessions import Turn as TurnRow

from .harness import Harness, open_runtime, seqs_contiguous

SCHEMA: JSONObject = {
    "type": "object",
    "properties": {"query": {"type": "string"}},
    "required": ["query"],
}
READ_ONLY = ToolHints(read_only=True)
DESTRUCTIVE = ToolHints(read_only=False, destructive=True)


@attrs.define
class FakePool:
    """MCP servers in memory: each tool answers ``result for <query>``; a gate can hold it."""

    servers: dict[str, tuple[McpServerConfig, tuple[McpTool, ...]]]
    calls: list[tuple[str, str, JSONObject]] = attrs.field(factory=list)
    hold: trio.Event | None = None
    started: trio.Event = attrs.field(factory=trio.Event)
    cancelled: list[str] = attrs.field(factory=list)
    outcome: McpOutcome | None = None
    broken: set[str] = attrs.field(factory=set)

    def configs(self) -> tuple[McpServerConfig, ...]:
        return tuple(config for config, _ in self.servers.values())

    async def tools(self, server: str) -> tuple[McpTool, ...]:
        if server in self.broken:
            raise McpUnavailable(f"MCP server {server} did not start")
        return self.servers[server][1]

    async def call(
        self,
        server: str,
        tool: str,
        arguments: JSONObject,
        timeout: float,  # noqa: ASYNC109
    ) -> McpOutcome:
        self.calls.append((server, tool, arguments))
        self.started.set()
        if self.hold is not None:
            try:
                await self.hold.wait()
            except trio.Cancelled:
                self.cancelled.append(tool)
                raise
        return self.outcome or McpOutcome("ok", f"result for {arguments.get('query')}")


def pool(*, trusted: bool, hints: ToolHints = READ_ONLY) -> FakePool:
    docs = McpServerConfig("docs", StdioTransport("docs-server"), trusted=trusted)
    tools = (
        McpTool("docs", "search", "Search the docs.", SCHEMA, hints),
        McpTool("docs", "drop", "Drop an index.", SCHEMA, DESTRUCTIVE),
    )
    return FakePool({"docs": (docs, tools)})


MODES = parse_modes(
    {
        "modes": {
            "librarian": {
                "description": "Looks things up.",
                "system_prompt": "You look things up.",
                "tool_groups": ["read"],
                "mcp": ["docs"],
            },
            "searcher": {
                "description": "Only searches.",
                "system_prompt": "You search.",
                "mcp": ["docs/search*"],
            },
        }
    },
    source="test",
    base=builtin_modes(),
)


def runtime(
    fake: FakePool, policy: Policy | None = None, store: SessionStore | None = None
) -> AbstractAsyncContextManager[Harness]:
    tools = ToolCatalogue.builtin().with_mcp(McpTools(fake))
    return open_runtime(tools=tools, modes=MODES, policy=policy, store=store)


async def turn_events(h: Harness, session_id: str) -> list[tuple[str, JSONObject]]:
    session = await h.store.get_session(session_id)
    assert session is not None
    with trio.fail_after(10):  # a bound: a call nobody runs would leave the turn waiting
        await h.wait_for(session, "turn.ended")
    return [(e.type, e.data) for e in await h.events(session)]


CALL = 'call mcp__docs__search {"query": "trio"}'


async def test_a_trusted_read_only_tool_runs_at_once_and_its_result_reaches_the_model() -> None:
    fake = pool(trusted=True)
    async with runtime(fake) as h:
        s = await h.session("librarian")
        await h.message(s, CALL)
        events = await turn_events(h, s.id)
        types = [t for t, _ in events]
        assert "approval.requested" not in types and "tool.call" not in types
        started = next(d for t, d in events if t == "tool.started")
        assert started == {
            "call_id": "call_1",
            "name": "mcp__docs__search",
            "arguments": {"query": "trio"},
            "server": "docs",
        }
        assert types.index("tool.started") < types.index("tool.result")
        result = next(d for t, d in events if t == "tool.result")
        assert result["ok"] is True and result["content"] == "result for trio"
        assert fake.calls == [("docs", "search", {"query": "trio"})]
        # The model read the result: its summary quotes the tool by name.
        final = [d for t, d in events if t == "message"][-1]
        assert "mcp__docs__search succeeded" in str(final["content"])
        assert dict(events)["turn.ended"]["reason"] == "completed"
        assert seqs_contiguous(await h.events(s))
        await h.assert_paired(s)


async def test_an_untrusted_server_asks_and_the_approved_call_runs_once() -> None:
    fake = pool(trusted=False)
    async with runtime(fake) as h:
        s = await h.session("librarian")
        await h.message(s, CALL)
        request = await h.approve_next(s)
        assert (
            request.data["rule"]
            == "default: mcp__docs__search asks (MCP server docs is not trusted)"
        )
        events = await turn_events(h, s.id)
        types = [t for t, _ in events]
        assert (
            types.index("approval.resolved")
            < types.index("tool.started")
            < types.index("tool.result")
        )
        assert len(fake.calls) == 1
        await h.assert_paired(s)


async def test_a_trusted_destructive_hint_asks_and_names_the_hint() -> None:
    fake = pool(trusted=True)
    async with runtime(fake) as h:
        s = await h.session("librarian")
        await h.message(s, 'call mcp__docs__drop {"query": "all"}')
        request = await h.wait_for(s, "approval.requested")
        assert (
            request.data["rule"]
            == "hint: mcp__docs__drop has destructiveHint (trusted MCP server docs)"
        )
        assert fake.calls == []


async def test_an_explicit_rule_wins_over_the_hints() -> None:
    fake = pool(trusted=True)
    policy = parse_policy(
        {"approval": {"rules": [{"tool": "mcp__docs__*", "action": "deny", "reason": "no"}]}},
        source="test",
    )
    async with runtime(fake, policy) as h:
        s = await h.session("librarian")
        await h.message(s, CALL)
        events = await turn_events(h, s.id)
        result = next(d for t, d in events if t == "tool.result")
        assert result["ok"] is False and "denied by policy: rule 1" in str(result["content"])
        assert "tool.started" not in [t for t, _ in events] and fake.calls == []


async def test_an_edited_approval_is_checked_against_the_servers_schema() -> None:
    fake = pool(trusted=False)
    async with runtime(fake) as h:
        s = await h.session("librarian")
        await h.message(s, CALL)
        request = await h.wait_for(s, "approval.requested")
        call_id = request.data["call_id"]
        bad = await h.send(
            s, {"type": "approval", "call_id": call_id, "decision": "edit", "arguments": {}}
        )
        assert bad.status == "rejected" and bad.code == "invalid_arguments"
        assert "'query' is a required property" in str(bad.error)
        good = await h.send(
            s,
            {
                "type": "approval",
                "call_id": call_id,
                "decision": "edit",
                "arguments": {"query": "edited"},
            },
        )
        assert good.status == "accepted", good
        events = await turn_events(h, s.id)
        assert fake.calls == [("docs", "search", {"query": "edited"})]
        assert next(d for t, d in events if t == "tool.started")["arguments"] == {"query": "edited"}


async def test_schema_invalid_arguments_never_reach_the_server() -> None:
    fake = pool(trusted=True)
    async with runtime(fake) as h:
        s = await h.session("librarian")
        await h.message(s, 'call mcp__docs__search {"query": 5}')
        events = await turn_events(h, s.id)
        result = next(d for t, d in events if t == "tool.result")
        assert result["ok"] is False
        assert "mcp__docs__search: 'query': 5 is not of type 'string'" in str(result["content"])
        assert "tool.started" not in [t for t, _ in events] and fake.calls == []


async def test_a_mode_gets_only_the_tools_it_selects() -> None:
    fake = pool(trusted=True)
    async with runtime(fake) as h:
        s = await h.session("searcher")
        await h.message(s, 'call mcp__docs__drop {"query": "x"}')
        events = await turn_events(h, s.id)
        result = next(d for t, d in events if t == "tool.result")
        assert "unknown tool 'mcp__docs__drop'" in str(result["content"])
        assert "MCP tools offered: mcp__docs__search" in str(result["content"])
        assert fake.calls == []


async def test_a_client_cannot_answer_a_server_side_call() -> None:
    fake = pool(trusted=True)
    fake.hold = trio.Event()
    async with runtime(fake) as h:
        s = await h.session("librarian")
        await h.message(s, CALL)
        started = await h.wait_for(s, "tool.started")
        ack = await h.send(
            s, {"type": "tool_result", "call_id": started.data["call_id"], "result": "forged"}
        )
        assert ack.status == "rejected" and ack.code == "not_waiting"
        assert "executes on the server" in str(ack.error)
        fake.hold.set()
        events = await turn_events(h, s.id)
        assert next(d for t, d in events if t == "tool.result")["content"] == "result for trio"


async def test_cancel_during_a_server_call_cancels_it_and_resolves_it_cancelled() -> None:
    fake = pool(trusted=True)
    fake.hold = trio.Event()
    async with runtime(fake) as h:
        s = await h.session("librarian")
        ack = await h.message(s, CALL)
        await h.wait_for(s, "tool.started")
        cancel = await h.send(s, {"type": "cancel", "turn_id": ack.turn_id})
        assert cancel.status == "accepted"
        events = await turn_events(h, s.id)
        assert fake.cancelled == ["search"]
        result = next(d for t, d in events if t == "tool.result")
        assert result["ok"] is False
        # Sent to its server, the call may have run there: the model is told so.
        assert result["content"] == (
            "cancelled: the turn ended (cancelled) while MCP server docs ran mcp__docs__search;"
            " whether the call took effect is unknown (it was not run again): check before"
            " calling it again"
        )
        assert dict(events)["turn.ended"]["reason"] == "cancelled"
        await h.assert_paired(s)


async def test_failed_and_timed_out_calls_reach_the_model_as_errors() -> None:
    for outcome, expected in [
        (McpOutcome("error", "no such page"), "error: no such page"),
        (McpOutcome("failed", "MCP server docs stopped"), "error: MCP server docs stopped"),
        (McpOutcome("timeout", ""), "did not answer search within 60 s"),
    ]:
        fake = pool(trusted=True)
        fake.outcome = outcome
        async with runtime(fake) as h:
            s = await h.session("librarian")
            await h.message(s, CALL)
            events = await turn_events(h, s.id)
            result = next(d for t, d in events if t == "tool.result")
            assert result["ok"] is False and expected in str(result["content"]), result
            assert dict(events)["turn.ended"]["reason"] == "completed"


async def test_a_server_that_cannot_start_costs_its_tools_not_the_turn() -> None:
    fake = pool(trusted=True)
    fake.broken.add("docs")
    async with runtime(fake) as h:
        s = await h.session("librarian")
        await h.message(s, "read notes.md")
        await h.answer_tool(s, "notes")
        events = await turn_events(h, s.id)
        assert dict(events)["turn.ended"]["reason"] == "completed"


SEARCH: JSONObject = {"call_id": "c1", "name": "mcp__docs__search", "arguments": {"query": "q"}}


async def crashed_during(store: SessionStore, session_id: str, *after: NewEvent) -> None:
    """The log a crash leaves: a turn whose assistant message called SEARCH, then *after*."""
    turn = TurnRow("turn_x", session_id, "librarian", TurnStatus.RUNNING, now(), now())
    message: JSONObject = {
        "message_id": "m1",
        "role": "assistant",
        "content": "",
        "agent": "librarian",
        "truncated": False,
        "tool_calls": [SEARCH],
    }
    started: JSONObject = {"agent": "librarian", "user_message_seq": 1}
    events = (
        NewEvent("user.message", {"message_id": "m0", "content": CALL}),
        NewEvent("turn.started", started, "turn_x"),
        NewEvent("message", message, "turn_x"),
        *after,
    )
    await store.append(Append(session_id, events, turn=turn))


async def test_recovery_resolves_a_call_that_was_running_and_never_runs_it_again() -> None:
    fake = pool(trusted=True)
    async with open_memory_store() as store:
        async with runtime(fake, store=store) as h:
            s = await h.session("librarian")
        # What a crash during the call leaves: tool.started and no result.
        await crashed_during(
            store, s.id, NewEvent("tool.started", {**SEARCH, "server": "docs"}, "turn_x")
        )
        async with runtime(fake, store=store) as h2:
            events = await turn_events(h2, s.id)
            result = next(d for t, d in events if t == "tool.result")
            assert result["ok"] is False
            assert "the runtime stopped while MCP server docs ran mcp__docs__search" in str(
                result["content"]
            )
            assert "whether the call took effect is unknown" in str(result["content"])
            assert fake.calls == []  # never run again
            # The turn carried on: the model saw the failure and answered.
            assert dict(events)["turn.ended"]["reason"] == "completed"
            await h2.assert_paired(s)


async def test_recovery_runs_an_approved_call_that_never_started() -> None:
    """Approved, then the runtime stopped before ``tool.started``: safe to run, and run once."""
    fake = pool(trusted=False)
    async with open_memory_store() as store:
        async with runtime(fake, store=store) as h:
            s = await h.session("librarian")
        request: JSONObject = {**SEARCH, "rule": "default", "expires_at": now() + 600}
        resolved: JSONObject = {"call_id": "c1", "decision": "approve", "by": "user"}
        await crashed_during(
            store,
            s.id,
            NewEvent("approval.requested", request, "turn_x"),
            NewEvent("approval.resolved", resolved, "turn_x"),
        )
        async with runtime(fake, store=store) as h2:
            events = await turn_events(h2, s.id)
            assert fake.calls == [("docs", "search", {"query": "q"})]
            assert [t for t, _ in events].count("tool.started") == 1
            assert dict(events)["turn.ended"]["reason"] == "completed"
            await h2.assert_paired(s)


@attrs.define
class RecordingTools:
    """The scripted model, keeping the tool list (the tuple itself) of every request."""

    inner: ScriptedModel = attrs.field(factory=ScriptedModel)
    tool_lists: list[object] = attrs.field(factory=list)
    name = "scripted"

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[ModelDelta]]:
        self.tool_lists.append(request.tools)
        async with self.inner.stream(request) as deltas:
            yield deltas


class IdeAndMcp:
    """A model whose first reply calls an IDE tool and an MCP tool at once; then "done"."""

    name = "two-calls"

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[ModelDelta]]:
        async def deltas() -> AsyncIterator[ModelDelta]:
            if request.messages[-1].role == "user":
                yield ToolCallDelta(ToolCallRequest("c_ide", "read_file", '{"path": "a.py"}'))
                yield ToolCallDelta(ToolCallRequest("c_mcp", "mcp__docs__search", '{"query": "q"}'))
                yield FinishDelta("tool_calls")
            else:
                yield TextDelta("done")
                yield FinishDelta()

        yield deltas()


async def test_shutdown_gives_a_running_server_call_its_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The turn also waits for the IDE, but the MCP call in progress is not cut short."""
    fake = pool(trusted=True)
    fake.hold = trio.Event()
    tools = ToolCatalogue.builtin().with_mcp(McpTools(fake))
    config = RuntimeConfig(shutdown_grace=5.0)
    async with open_runtime(config, model=IdeAndMcp(), tools=tools, modes=MODES) as h:
        s = await h.session("librarian")
        await h.message(s, "look it up")
        await h.wait_for(s, "tool.started")  # the IDE's call is out; the MCP call runs
        async with trio.open_nursery() as nursery:
            nursery.start_soon(h.supervisor.wind_down)
            await trio.sleep(1)  # inside the grace
            fake.hold.set()  # the MCP call finishes
        results = [e.data for e in await h.events(s) if e.type == "tool.result"]
        assert fake.cancelled == []
        assert [(r["call_id"], r["ok"]) for r in results] == [("c_mcp", True)]


async def test_the_offer_is_the_same_tuple_until_a_server_relists() -> None:
    """A provider encodes a tool list once per tuple: an MCP mode's must not be new each step."""
    fake = pool(trusted=True)
    tools = McpTools(fake)
    selectors = MODES.get("librarian").mcp
    first = await tools.offered(selectors)
    assert await tools.offered(selectors) is first
    base = MODES.tools_for("librarian")
    offer = first.after(base)
    assert first.after(base) is offer
    assert [s.name for s in offer[len(base) :]] == ["mcp__docs__search", "mcp__docs__drop"]
    config, listed = fake.servers["docs"]
    fake.servers["docs"] = (config, tuple(listed[:1]))  # the server re-listed its tools
    relisted = await tools.offered(selectors)
    assert relisted is not first and list(relisted.tools) == ["mcp__docs__search"]


async def test_every_step_of_an_mcp_mode_offers_the_same_tool_list() -> None:
    fake = pool(trusted=True)
    model = RecordingTools()
    tools = ToolCatalogue.builtin().with_mcp(McpTools(fake))
    async with open_runtime(model=model, tools=tools, modes=MODES) as h:
        s = await h.session("librarian")
        for _ in range(2):
            await h.message(s, CALL)
            await h.wait_for(s, "turn.ended", after=(await h.events(s))[-1].seq)
    assert len(model.tool_lists) == 4  # two steps per turn
    assert all(offered is model.tool_lists[0] for offered in model.tool_lists)
