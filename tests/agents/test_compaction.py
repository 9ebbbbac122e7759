"""Long sessions: compaction, overflow recovery, cut tool results (issue #11)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from agents import ModelError, RuntimeConfig, ScriptedModel
from agents._core._budget import ModelCatalog, ModelLimits
from agents._core._context import (
    CUT_HINT,
    SUMMARY_HEADER,
    ContextMeter,
    fit_history,
    fit_tool_result,
    plan_compaction,
)
from agents._core._model import ChatMessage, ModelDelta, ModelRequest, ToolCallRequest
from agents.testing import SessionState, check_pairing
from sessions import Event

from .harness import Harness, open_runtime

PADDING = "Some context that makes the message long. " * 16
SMALL = ModelLimits(context_window=1_200, max_output_tokens=200)


def config(**extra: object) -> RuntimeConfig:
    return RuntimeConfig(models=ModelCatalog({"scripted": SMALL}), **extra)  # type: ignore[arg-type]


@attrs.define
class Recording:
    """The scripted model, recording every request; optionally failing some."""

    inner: ScriptedModel = attrs.field(factory=ScriptedModel)
    requests: list[ModelRequest] = attrs.field(factory=list)
    overflow_chat: int = 0  # refuse this many chat requests as too long
    hold_compaction: bool = False
    compaction_entered: trio.Event = attrs.field(factory=trio.Event)

    @property
    def name(self) -> str:
        return "scripted"

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[ModelDelta]]:
        self.requests.append(request)
        if request.purpose == "chat" and self.overflow_chat > 0:
            self.overflow_chat -= 1
            raise ModelError("maximum context length exceeded", code="context_overflow")
        if request.purpose == "compact" and self.hold_compaction:
            self.compaction_entered.set()
            await trio.sleep_forever()
        async with self.inner.stream(request) as deltas:
            yield deltas


def size(request: ModelRequest) -> int:
    """Tokens of a request by the same rule the runtime estimates with (chars / 4)."""
    chars = sum(
        len(m.content or "") + sum(len(c.arguments) + len(c.name) for c in m.tool_calls)
        for m in request.messages
    )
    return chars // 4


async def turn(h: Harness, session_id: str, content: str) -> str:
    session = await h.store.get_session(session_id)
    assert session is not None
    events = await h.events(session)
    last = events[-1].seq if events else 0
    await h.message(session, content)
    ended = await h.wait_for(session, "turn.ended", after=last)
    return str(ended.data["reason"])


def fold(events: list[Event], session_id: str) -> SessionState:
    state = SessionState(session_id)
    state.apply_all(events)
    return state


# -- the pure parts -------------------------------------------------------------


def test_a_cut_never_parts_a_call_from_its_result() -> None:
    call = ToolCallRequest("c1", "read_file", '{"path": "a"}')
    messages = [
        ChatMessage("user", "one"),
        ChatMessage("assistant", None, (call,)),
        ChatMessage("tool", "result", tool_call_id="c1"),
        ChatMessage("assistant", "done"),
        ChatMessage("user", "two"),
        ChatMessage("assistant", "ok"),
        ChatMessage("user", "three"),
    ]
    seqs = [2, 3, 5, 6, 9, 10, 13]
    plan = plan_compaction(messages, seqs, keep_users=2, keep_from_seq=13)
    assert plan is not None
    assert plan.split == 4 and (plan.from_seq, plan.to_seq) == (2, 6)
    check_pairing(messages[plan.split :])
    # Keeping three user messages leaves nothing to cut.
    assert plan_compaction(messages, seqs, keep_users=3, keep_from_seq=None) is None
    # The current turn is kept even when it holds more than N user messages' worth.
    assert plan_compaction(messages, seqs, keep_users=0, keep_from_seq=9) == attrs.evolve(
        plan, split=4
    )


def test_an_earlier_summary_is_replaced_with_what_follows() -> None:
    messages = [
        ChatMessage("user", f"{SUMMARY_HEADER}\nold"),
        ChatMessage("user", "a"),
        ChatMessage("assistant", "b"),
        ChatMessage("user", "c"),
    ]
    plan = plan_compaction(
        messages, [20, 8, 9, 21], keep_users=1, keep_from_seq=None, summary_from=2
    )
    assert plan is not None and (plan.split, plan.from_seq, plan.to_seq) == (3, 2, 9)
    only_summary = messages[:1] + messages[3:]
    assert (
        plan_compaction(only_summary, [20, 21], keep_users=1, keep_from_seq=None, summary_from=2)
        is None
    )


def test_an_oversized_result_keeps_head_and_tail() -> None:
    content = "HEAD" + "x" * 10_000 + "TAIL"
    cut = fit_tool_result(content, 1_000)
    assert len(cut) <= 1_000 and cut.startswith("HEAD") and cut.endswith("TAIL")
    assert CUT_HINT in cut and "characters cut" in cut
    assert fit_tool_result("short", 1_000) == "short"
    # A limit too small for the marker never makes a text longer.
    for limit in (0, 1, 20, 60, 160, 299):
        assert len(fit_tool_result("x" * 300, limit)) <= max(limit, 1)


def test_the_meter_adds_estimates_to_the_reported_size() -> None:
    meter = ContextMeter()
    history = [ChatMessage("user", "x" * 400)]
    fresh = meter.estimate(history, "system", (), 10_000)
    assert fresh > 100
    meter.report(history, 1_000, 1)  # the provider counted 1000 for that call
    history.append(ChatMessage("assistant", "y" * 40))
    assert meter.estimate(history, "system", (), 10_000) == 1_000 + 10 + 4


# -- the runtime ----------------------------------------------------------------


async def test_a_long_session_stays_within_the_window_and_keeps_its_facts() -> None:
    model = Recording()
    # The scripted model's own window (4096 tokens, 512 kept for output).
    async with open_runtime(RuntimeConfig(keep_user_messages=2), model=model) as h:
        s = await h.session("coder")
        for i in range(50):
            reason = await turn(h, s.id, f"remember fact {i} is value{i}. {PADDING}")
            assert reason == "completed"
        events = await h.events(s)
        types = [ev.type for ev in events]
        compactions = [ev for ev in events if ev.type == "context.compacted"]
        assert len(compactions) >= 3
        assert types.count("compaction.started") == len(compactions)
        budget = 4_096 - 512
        chats = [r for r in model.requests if r.purpose == "chat"]
        assert max(size(r) for r in chats) <= budget
        for r in chats:
            check_pairing([m for m in r.messages if m.role != "system"])
        # The summary is actually used: the earliest fact is still in what the model sees.
        last = chats[-1]
        assert last.messages[1].content is not None
        assert last.messages[1].content.startswith(SUMMARY_HEADER)
        # The first summary kept the first facts; the last keeps facts no longer
        # verbatim in the tail (older ones give way: the summary is bounded).
        assert "fact 0 is value0" in str(compactions[0].data["summary"])
        verbatim = " ".join(m.content or "" for m in last.messages[2:])
        summarised = [i for i in range(50) if f"fact {i} is value{i}." in last.messages[1].content]
        assert summarised and not any(f"fact {i} is value{i}." in verbatim for i in summarised)
        assert len(last.messages[1].content) <= (4_096 - 512) // 4 * 4 + 200
        # ...and the recent turns are verbatim.
        assert any(m.content == f"remember fact 49 is value49. {PADDING}" for m in last.messages)
        # Replay derives exactly the same history from the log.
        live = h.supervisor.sessions.get(s.id)
        replayed = fold(events, s.id)
        assert live is not None
        assert replayed.messages == live.state.messages
        assert replayed.message_seqs == live.state.message_seqs
        # Compaction is counted in usage.
        purposes = [ev.data.get("purpose") for ev in events if ev.type == "usage"]
        assert purposes.count("compact") == len(compactions)
        first = compactions[0].data
        assert first["reason"] == "threshold"
        assert isinstance(first["tokens_after"], int) and isinstance(first["tokens_before"], int)
        assert first["tokens_after"] < first["tokens_before"]


async def test_the_compact_command_is_a_turn_and_passes_instructions() -> None:
    model = Recording()
    async with open_runtime(config(), model=model) as h:
        s = await h.session("coder")
        for i in range(3):
            await turn(h, s.id, f"remember fact {i}")
        last = (await h.events(s))[-1].seq
        ack = await h.send(s, {"type": "compact", "instructions": "the fact numbers"})
        assert ack.status == "accepted" and ack.turn_id is not None
        ended = await h.wait_for(s, "turn.ended", after=last)
        assert ended.data["reason"] == "completed"
        done = await h.wait_for(s, "context.compacted", after=last)
        assert done.data["reason"] == "requested"
        compaction = [r for r in model.requests if r.purpose == "compact"][-1]
        assert "the fact numbers" in (compaction.messages[0].content or "")
        replay = await h.send(s, {"type": "compact", "id": ack.id})
        assert replay.status == "duplicate"
        bad = await h.send(s, {"type": "compact", "instructions": 3})
        assert bad.status == "rejected" and bad.code == "invalid_command"


async def test_cancel_during_compaction_leaves_no_half_compaction() -> None:
    model = Recording(hold_compaction=True)
    async with open_runtime(config(), model=model) as h:
        s = await h.session("coder")
        for i in range(3):
            await turn(h, s.id, f"remember fact {i}")
        live = h.supervisor.sessions.get(s.id)
        assert live is not None
        before = list(live.state.messages)
        ack = await h.send(s, {"type": "compact"})
        await model.compaction_entered.wait()
        with trio.fail_after(1):
            cancelled = await h.send(s, {"type": "cancel", "turn_id": ack.turn_id})
        assert cancelled.status == "accepted"
        types = await h.types(s)
        assert types[-1] == "turn.ended" and "compaction.started" in types
        assert "context.compacted" not in types
        assert live.state.messages == before


async def test_overflow_compacts_and_retries_once() -> None:
    model = Recording()
    async with open_runtime(config(), model=model) as h:
        s = await h.session("coder")
        for i in range(3):
            await turn(h, s.id, f"remember fact {i}")
        model.overflow_chat = 1
        assert await turn(h, s.id, "one more") == "completed"
        compacted = [ev for ev in await h.events(s) if ev.type == "context.compacted"]
        assert [ev.data["reason"] for ev in compacted] == ["overflow"]


async def test_overflow_that_compaction_cannot_fix_ends_the_turn_with_a_clear_error() -> None:
    model = Recording(overflow_chat=10)
    async with open_runtime(config(), model=model) as h:
        s = await h.session("coder")
        assert await turn(h, s.id, "hello") == "error"
        errors = [ev.data for ev in await h.events(s) if ev.type == "error"]
        assert errors[-1]["code"] == "context_overflow"
        assert errors[-1]["retryable"] is False
        message = str(errors[-1]["message"])
        # It passes the provider's words on (its window may be smaller than the
        # one configured), and claims no compaction where there was none to make.
        assert "window" in message and "nothing of it could be compacted" in message
        assert "(the provider said: maximum context length exceeded)" in message


async def test_overflow_after_compacting_says_the_turn_alone_is_too_large() -> None:
    model = Recording()
    async with open_runtime(config(), model=model) as h:
        s = await h.session("coder")
        for n in range(3):
            assert await turn(h, s.id, f"hello {n}") == "completed"
        model.overflow_chat = 10
        assert await turn(h, s.id, "one more") == "error"
        events = await h.events(s)
        assert [ev.data["reason"] for ev in events if ev.type == "compaction.started"] == [
            "overflow"
        ]
        message = str([ev.data for ev in events if ev.type == "error"][-1]["message"])
        assert "even after compacting it" in message and "the provider said:" in message


async def test_an_oversized_tool_result_is_cut_for_the_model_only() -> None:
    model = Recording()
    async with open_runtime(config(), model=model) as h:
        s = await h.session("coder")
        await h.message(s, "read big.txt")
        whole = "BEGIN " + "line of text\n" * 2_000 + " END"
        await h.answer_tool(s, whole)
        await h.wait_for(s, "turn.ended")
        results = [ev for ev in await h.events(s) if ev.type == "tool.result"]
        assert results[0].data["content"] == whole
        sent = next(m for m in model.requests[-1].messages if m.role == "tool").content or ""
        assert len(sent) < len(whole) and sent.startswith("BEGIN") and sent.endswith("END")
        assert CUT_HINT in sent


def test_the_meter_finds_the_oversized_results_fit_history_cuts() -> None:
    history = [
        ChatMessage("user", "read"),
        ChatMessage("tool", "x" * 5_000, tool_call_id="c1"),
        ChatMessage("tool", "short", tool_call_id="c2"),
    ]
    meter = ContextMeter()
    meter.estimate(history, "s", (), 1_000)
    history.append(ChatMessage("tool", "y" * 3_000, tool_call_id="c3"))
    meter.estimate(history, "s", (), 1_000)
    assert meter.oversized == [1, 3]
    cuts: dict[str, ChatMessage] = {}
    fitted = fit_history(history, 1_000, cuts, meter.oversized)
    assert fitted == fit_history(history, 1_000, {})  # the same as scanning everything
    assert [len(m.content or "") <= 1_000 for m in fitted] == [True] * 4
    assert fit_history(history, 1_000, cuts, meter.oversized)[1] is fitted[1]  # cut once
    assert fit_history(history[:1], 1_000, cuts, []) == history[:1]
