"""Which model each LLM call uses: new_task's, the session's, the mode's, the server's."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import pytest
import trio

from agents import Policy, RuntimeConfig, ScriptedModel, ToolError, open_supervisor
from agents._core._budget import MAX_MODEL_NAME
from agents._core._model import (
    SUBTASK_MARKER,
    ModelDelta,
    ModelRequest,
    ToolCallDelta,
)
from agents._core._model_choice import check_model_name, model_for
from agents._core._modes import Mode, ModeRegistry, builtin_modes
from agents.commands import SwitchModel, encode_command, parse_command
from agents.testing import SessionState, parse_modes, validate_call
from sessions import JSON, Event, Session, open_memory_store

from .harness import Harness, open_runtime


class _WithTaskModel:
    """The scripted model's deltas, with ``model`` added to every ``new_task`` call."""

    def __init__(self, inner: AsyncIterator[ModelDelta], model: str) -> None:
        self.inner = inner
        self.model = model

    def __aiter__(self) -> _WithTaskModel:
        return self

    async def __anext__(self) -> ModelDelta:
        delta = await self.inner.__anext__()
        if isinstance(delta, ToolCallDelta) and delta.call.name == "new_task":
            arguments = json.loads(delta.call.arguments) | {"model": self.model}
            return ToolCallDelta(attrs.evolve(delta.call, arguments=json.dumps(arguments)))
        return delta


@attrs.define
class Recording:
    """The scripted model, recording every request (and which model it asked for)."""

    inner: ScriptedModel = attrs.field(factory=ScriptedModel)
    requests: list[ModelRequest] = attrs.field(factory=list)
    task_model: str | None = None  # given to every new_task call the model makes

    @property
    def name(self) -> str:
        return "scripted"

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[ModelDelta]]:
        self.requests.append(request)
        async with self.inner.stream(request) as deltas:
            yield deltas if self.task_model is None else _WithTaskModel(deltas, self.task_model)

    def chat_models(self) -> list[str]:
        return [r.model for r in self.requests if r.purpose == "chat"]

    def subtask_models(self, task: str) -> list[str]:
        """The models of the chat requests of the subtask given *task*."""
        return [
            r.model
            for r in self.requests
            if r.purpose == "chat"
            and SUBTASK_MARKER in (r.messages[0].content or "")
            and r.messages[1].content == task
        ]

    def main_models(self) -> list[str]:
        return [
            r.model
            for r in self.requests
            if r.purpose == "chat" and SUBTASK_MARKER not in (r.messages[0].content or "")
        ]


MODES = parse_modes({"modes": {"coder": {"model": "mode-model"}}}, source="test")


@asynccontextmanager
async def runtime(model: Recording, modes: ModeRegistry = MODES) -> AsyncIterator[Harness]:
    """A runtime whose coder mode has its own model and whose server model is ``cfg``."""
    async with open_memory_store() as store:
        async with open_supervisor(
            store, model, modes=modes, policy=Policy(), config=RuntimeConfig(model="cfg")
        ) as supervisor:
            yield Harness(store, supervisor)


async def last_seq(h: Harness, session: Session) -> int:
    events = await h.events(session)
    return events[-1].seq if events else 0


async def run_turn(h: Harness, session: Session, content: str) -> list[Event]:
    """Send *content*, wait for its turn to end; the events it added."""
    after = await last_seq(h, session)
    ack = await h.message(session, content)
    await h.wait_for(session, "turn.ended", after=after, where=lambda e: e.turn_id == ack.turn_id)
    return [ev for ev in await h.events(session) if ev.seq > after]


def started_model(events: list[Event]) -> JSON:
    (started,) = [ev for ev in events if ev.type == "turn.started"]
    return started.data.get("model")


async def switch(h: Harness, session: Session, model: JSON, **extra: JSON) -> str:
    ack = await h.send(session, {"type": "switch_model", "model": model, **extra})
    assert ack.status == "accepted", ack
    return ack.id


# -- the precedence -------------------------------------------------------------


def test_model_for_takes_the_first_model_set() -> None:
    state = SessionState("ses")
    plain, own = Mode("ask", "d", "p"), Mode("coder", "d", "p", model="mode")
    assert model_for(state, None, plain, "cfg") == "cfg"
    assert model_for(state, None, own, "cfg") == "mode"
    state.model = "session"
    assert model_for(state, None, own, "cfg") == "session"
    state.subtask_models["sub_1"] = "sub"
    assert model_for(state, "sub_1", own, "cfg") == "sub"
    assert model_for(state, "sub_2", own, "cfg") == "session"  # a subtask without its own
    assert model_for(state, None, own, "cfg") == "session"


def test_model_names_are_checked_for_form_only() -> None:
    assert check_model_name("any/unknown:model") == "any/unknown:model"
    for bad in ("", "  ", "x" * (MAX_MODEL_NAME + 1), "gpt\x00", "gpt\n4", "gpt\u202e4"):
        with pytest.raises(ValueError, match="model name"):
            check_model_name(bad)
    assert check_model_name("modèle ünicode") == "modèle ünicode"  # printable is enough
    with pytest.raises(ValueError):
        SwitchModel("c1", "")


def test_switch_model_round_trips() -> None:
    for model in ("gpt-4.1", None, "x" * MAX_MODEL_NAME):
        command = SwitchModel("c1", model)
        wire = encode_command(command)
        assert wire == {"type": "switch_model", "id": "c1", "model": model}
        assert parse_command(wire) == command


def test_new_task_model_is_optional_and_checked() -> None:
    base = {"mode": "ask", "message": "m"}
    assert validate_call("new_task", json.dumps(base)) == base
    assert validate_call("new_task", json.dumps(base | {"model": "big"}))["model"] == "big"
    for bad in ("", " ", "x" * (MAX_MODEL_NAME + 1), 3, None):
        with pytest.raises(ToolError, match="new_task"):
            validate_call("new_task", json.dumps(base | {"model": bad}))


async def test_a_mode_model_then_the_session_model_then_back_to_the_defaults() -> None:
    model = Recording()
    async with runtime(model) as h:
        coder = await h.session("coder")
        with trio.fail_after(10):
            events = await run_turn(h, coder, "explain the parser")
            assert started_model(events) == "mode-model"
            assert set(model.chat_models()) == {"mode-model"}

            await switch(h, coder, "session-model")
            switched = [ev for ev in await h.events(coder) if ev.type == "model.switched"]
            assert [ev.data for ev in switched] == [{"from": None, "to": "session-model"}]
            assert switched[0].turn_id is None  # no turn was running
            model.requests.clear()
            events = await run_turn(h, coder, "explain the lexer")
            assert started_model(events) == "session-model"
            assert set(model.chat_models()) == {"session-model"}
            usage = [ev.data["model"] for ev in events if ev.type == "usage"]
            assert usage and set(usage) == {"session-model"}

            await switch(h, coder, None)
            model.requests.clear()
            events = await run_turn(h, coder, "explain the writer")
            assert started_model(events) == "mode-model"
            assert set(model.chat_models()) == {"mode-model"}
            types = [ev.type for ev in await h.events(coder)]
            assert types.count("model.switched") == 2

            # A mode without a model of its own: the server's.
            ask = await h.session("ask")
            model.requests.clear()
            events = await run_turn(h, ask, "explain the reader")
            assert started_model(events) == "cfg"
            assert set(model.chat_models()) == {"cfg"}


async def test_the_switched_model_is_kept_in_the_fold() -> None:
    async with runtime(Recording()) as h:
        s = await h.session("ask")
        await switch(h, s, "one")
        await switch(h, s, "two")
        state = SessionState(s.id)
        state.apply_all(await h.events(s))
        assert state.model == "two"
        await switch(h, s, None)
        state.apply_all(await h.events(s))
        assert state.model is None


async def test_a_switch_mid_turn_applies_to_the_next_llm_call() -> None:
    model = Recording()
    async with runtime(model) as h:
        s = await h.session("ask")
        with trio.fail_after(10):
            ack = await h.message(s, "read a.py")
            call = await h.wait_for(s, "tool.call")
            assert model.chat_models() == ["cfg"]
            await switch(h, s, "mid")
            switched = await h.wait_for(s, "model.switched")
            assert switched.turn_id == ack.turn_id  # it belongs to the running turn
            await h.answer_tool(s, "print(1)")
            await h.wait_for(s, "turn.ended", after=call.seq)
        assert model.chat_models() == ["cfg", "mid"]
        started = await h.wait_for(s, "turn.started")
        assert started.data["model"] == "cfg"


async def test_the_subtask_model_wins_over_the_session_model() -> None:
    model = Recording(task_model="sub-model")
    async with runtime(model) as h:
        s = await h.session("orchestrator")
        await switch(h, s, "session-model")
        with trio.fail_after(10):
            events = await run_turn(h, s, "first explain the parser then explain the lexer")
        starts = [ev for ev in events if ev.type == "subtask.started"]
        assert [ev.data.get("model") for ev in starts] == ["sub-model", "sub-model"]
        assert set(model.subtask_models("explain the parser")) == {"sub-model"}
        assert set(model.subtask_models("explain the lexer")) == {"sub-model"}
        assert set(model.main_models()) == {"session-model"}
        assert started_model(events) == "session-model"
        sub_usage = {
            ev.data["model"] for ev in events if ev.type == "usage" and "subtask_id" in ev.data
        }
        assert sub_usage == {"sub-model"}


async def test_a_subtask_without_a_model_uses_the_session_defaults() -> None:
    model = Recording()
    async with runtime(model) as h:
        s = await h.session("orchestrator")
        with trio.fail_after(10):
            events = await run_turn(h, s, "first explain the parser then explain the lexer")
        starts = [ev for ev in events if ev.type == "subtask.started"]
        assert len(starts) == 2 and all("model" not in ev.data for ev in starts)
        # The scripted router sends "explain" to ask, which has no model of its own.
        assert set(model.subtask_models("explain the parser")) == {"cfg"}


async def test_a_resumed_subtask_keeps_its_model_after_a_restart() -> None:
    first = Recording(task_model="sub-model")
    async with open_memory_store() as store:
        async with open_runtime(RuntimeConfig(model="cfg"), model=first, store=store) as h:
            s = await h.session("orchestrator")
            with trio.fail_after(10):
                await h.message(s, "first read a.py then explain a.py")
                call = await h.wait_for(s, "tool.call")
            assert call.data.get("subtask_id") is not None
            assert set(first.subtask_models("read a.py")) == {"sub-model"}
        # The log alone says which model the open subtask uses.
        state = SessionState(s.id)
        state.apply_all(await store.read_events(s.id))
        sub = str(call.data["subtask_id"])
        assert state.subtask_models == {sub: "sub-model"}
        assert sub in state.open_subtasks

        again = Recording(task_model="other-model")
        async with open_runtime(RuntimeConfig(model="cfg"), model=again, store=store) as h2:
            with trio.fail_after(10):
                await h2.answer_tool(s, "print(1)")
                await h2.wait_for(s, "turn.ended", after=call.seq)
            assert set(again.subtask_models("read a.py")) == {"sub-model"}
            assert set(again.subtask_models("explain a.py")) == {"other-model"}
            assert set(again.main_models()) == {"cfg"}
            state.apply_all(await store.read_events(s.id))
            assert state.subtask_models == {}


# -- refusals and idempotency -----------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({}, "missing field 'model'"),
        ({"model": 3}, "'model' must be a string, got number"),
        ({"model": ""}, "must not be empty"),
        ({"model": "   "}, "must not be empty"),
        ({"model": "m" * (MAX_MODEL_NAME + 1)}, f"at most {MAX_MODEL_NAME} characters"),
        ({"model": "m", "agent": "ask"}, "unknown field"),
    ],
)
async def test_bad_switch_model_commands_are_refused(extra: dict[str, JSON], match: str) -> None:
    async with open_runtime() as h:
        s = await h.session("ask")
        ack = await h.send(s, {"type": "switch_model", **extra})
        assert (ack.status, ack.code) == ("rejected", "invalid_command")
        assert ack.error is not None and match in ack.error
        assert "model.switched" not in await h.types(s)


async def test_a_repeated_switch_model_id_has_no_second_effect() -> None:
    async with open_runtime() as h:
        s = await h.session("ask")
        command_id = await switch(h, s, "one")
        again = await h.send(s, {"type": "switch_model", "id": command_id, "model": "two"})
        assert again.status == "duplicate"
        # Switching to the model already in force is accepted and commits nothing.
        await switch(h, s, "one")
        switched = [ev.data for ev in await h.events(s) if ev.type == "model.switched"]
        assert switched == [{"from": None, "to": "one"}]


def test_builtin_modes_have_no_model_so_the_server_decides() -> None:
    assert all(mode.model is None for mode in builtin_modes().modes.values())
