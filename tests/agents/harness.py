"""A runtime on the in-memory store and the scripted model, and a client for it.

No network: commands go straight to :meth:`Supervisor.submit`, events come from
the store's subscription, exactly as the transports use them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import trio

from agents import (
    Ack,
    ModelClient,
    ModeRegistry,
    Policy,
    RuntimeConfig,
    ScriptedModel,
    Supervisor,
    builtin_modes,
    open_supervisor,
)
from agents._tools import ToolCatalogue
from agents.testing import SessionState, check_pairing
from sessions import JSON, Event, Session, SessionStore, new_id, open_memory_store


@attrs.define
class Harness:
    store: SessionStore
    supervisor: Supervisor

    async def session(self, agent: str | None = None, owner: str = "alice") -> Session:
        return await self.supervisor.create_session(owner, agent=agent)

    async def send(self, session: Session, command: dict[str, JSON]) -> Ack:
        command.setdefault("id", new_id("cmd"))
        return await self.supervisor.submit(session, command)

    async def message(self, session: Session, content: str, **extra: JSON) -> Ack:
        ack = await self.send(session, {"type": "user_message", "content": content, **extra})
        assert ack.status == "accepted", ack
        return ack

    async def wait_for(
        self,
        session: Session,
        type_: str,
        *,
        after: int = 0,
        where: Callable[[Event], bool] = lambda ev: True,
    ) -> Event:
        """The first committed event of *type_* after seq *after* matching *where*."""
        async with self.store.subscribe(session.id, after=after) as sub:
            async for ev in sub:
                if ev.type == type_ and where(ev):
                    return ev
        raise AssertionError("subscription ended")

    async def events(self, session: Session) -> list[Event]:
        return await self.store.read_events(session.id)

    async def types(self, session: Session) -> list[str]:
        return [ev.type for ev in await self.events(session)]

    async def approve_next(self, session: Session, after: int = 0, **extra: JSON) -> Event:
        req = await self.wait_for(session, "approval.requested", after=after)
        ack = await self.send(
            session,
            {"type": "approval", "call_id": req.data["call_id"], "decision": "approve", **extra},
        )
        assert ack.status == "accepted", ack
        return req

    async def answer_tool(self, session: Session, result: JSON, after: int = 0) -> Event:
        call = await self.wait_for(session, "tool.call", after=after)
        ack = await self.send(
            session, {"type": "tool_result", "call_id": call.data["call_id"], "result": result}
        )
        assert ack.status == "accepted", ack
        return call

    async def assert_paired(self, session: Session) -> None:
        """Every stored history (main context and subtasks) keeps the pairing invariant."""
        state = SessionState(session.id)
        contexts: dict[str, list[Event]] = {}
        events = await self.events(session)
        state.apply_all(events)
        check_pairing(state.messages)
        for ev in events:
            sub = ev.data.get("subtask_id")
            if isinstance(sub, str):
                contexts.setdefault(sub, []).append(ev)
        for sub_events in contexts.values():
            sub_state = SessionState(session.id)
            sub_state.apply_all(sub_events)
            check_pairing(sub_state.context(str(sub_events[0].data["subtask_id"])))


def seqs_contiguous(events: list[Event]) -> bool:
    return [ev.seq for ev in events] == list(range(1, len(events) + 1))


@asynccontextmanager
async def open_runtime(
    config: RuntimeConfig | None = None,
    *,
    model: ModelClient | None = None,
    policy: Policy | None = None,
    store: SessionStore | None = None,
    tools: ToolCatalogue | None = None,
    modes: ModeRegistry | None = None,
) -> AsyncIterator[Harness]:
    """A supervisor over a fresh in-memory store (or the given *store*)."""
    async with open_memory_store() if store is None else _given(store) as opened:
        async with open_supervisor(
            opened,
            model or ScriptedModel(),
            modes=modes or builtin_modes(),
            policy=policy or Policy(),
            config=config or RuntimeConfig(),
            tools=tools,
        ) as supervisor:
            yield Harness(opened, supervisor)


@asynccontextmanager
async def _given(store: SessionStore) -> AsyncIterator[SessionStore]:
    yield store


async def settle() -> None:
    """Let every task that can run, run (deterministic; no wall-clock sleep)."""
    await trio.testing.wait_all_tasks_blocked()
