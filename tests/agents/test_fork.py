"""Forking a session in process: the copied prefix, the closing events, the store import."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import attrs
import pytest

from agents import CommandError
from agents._fork import WHY
from agents.testing import SessionState
from sessions import (
    Append,
    Conflict,
    Event,
    GroupCommitStore,
    NewEvent,
    Session,
    SessionLimitReached,
    new_id,
    now,
    open_memory_store,
    open_sqlite_store,
)

from .harness import Harness, open_runtime, seqs_contiguous


def envelope(event: Event) -> tuple[int, str, float, str | None, object]:
    return (event.seq, event.type, event.ts, event.turn_id, event.data)


def folded(session_id: str, events: list[Event]) -> SessionState:
    state = SessionState(session_id)
    state.apply_all(events)
    return state


def assert_closed(state: SessionState) -> None:
    assert state.open_turn is None
    assert state.pending == {}
    assert state.open_subtasks == {}
    assert state.partial_text == {}


async def finished(h: Harness, session: Session, content: str, after: int = 0) -> Event:
    await h.message(session, content)
    ended = await h.wait_for(session, "turn.ended", after=after)
    assert ended.data["reason"] == "completed"
    return ended


async def fork_of(h: Harness, session: Session, at_seq: int | None = None) -> list[Event]:
    """Fork *session* and return the fork's log, checking what every fork must be."""
    before = await h.events(session)
    fork = await h.supervisor.fork_session(session, at_seq=at_seq)
    assert await h.events(session) == before  # the original is untouched
    cut = len(before) if at_seq is None else at_seq
    assert fork.at_seq == cut
    events = await h.events(fork.session)
    assert [envelope(e) for e in events[:cut]] == [envelope(e) for e in before[:cut]]
    assert all(e.session_id == fork.session.id for e in events)
    assert seqs_contiguous(events)
    assert_closed(folded(fork.session.id, events))
    await h.assert_paired(fork.session)
    assert fork.session.owner == session.owner
    assert fork.session.id != session.id
    assert await h.store.get_session(fork.session.id) == fork.session
    return events


async def test_a_fork_of_a_finished_conversation_is_its_log() -> None:
    async with open_runtime() as h:
        s = await h.session("ask")
        await finished(h, s, "hello there")
        events = await fork_of(h, s)
        assert len(events) == len(await h.events(s))
        forks = [x for x in await h.store.list_sessions("alice") if x.id != s.id]
        assert [(f.title, f.current_agent) for f in forks] == [("hello there (fork)", "ask")]


async def test_a_fork_in_a_pending_approval_cancels_it_and_ends_the_turn() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "create a.py with x")
        req = await h.wait_for(s, "approval.requested")
        events = await fork_of(h, s)
        tail = events[req.seq :]
        assert [e.type for e in tail] == ["approval.resolved", "tool.result", "turn.ended"]
        assert tail[0].data == {
            "call_id": req.data["call_id"],
            "decision": "cancel",
            "by": "cancel",
        }
        assert (tail[1].data["ok"], tail[1].data["content"]) == (False, WHY)
        assert tail[2].data["reason"] == "interrupted"
        assert isinstance(tail[2].data["usage"], dict)  # the turn's usage up to the fork point
        assert {e.turn_id for e in tail} == {req.turn_id}
        fork_id = events[0].session_id
        assert await h.store.pending_approvals(fork_id) == []
        # The original still waits for its approval, and carries on when it comes.
        assert [a.call_id for a in await h.store.pending_approvals(s.id)] == [req.data["call_id"]]
        await h.approve_next(s)
        await h.answer_tool(s, "wrote 1 byte")
        assert (await h.wait_for(s, "turn.ended")).data["reason"] == "completed"


async def test_a_fork_in_a_pending_tool_call_fails_the_call() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "read a.py")
        call = await h.wait_for(s, "tool.call")
        events = await fork_of(h, s, at_seq=call.seq)
        tail = events[call.seq :]
        assert [e.type for e in tail] == ["tool.result", "turn.ended"]
        assert tail[0].data["call_id"] == call.data["call_id"]
        assert tail[0].data["ok"] is False


async def test_a_fork_in_streamed_text_keeps_it_as_a_truncated_message() -> None:
    async with open_runtime() as h:
        s = await h.session("ask")
        await finished(h, s, "stream 20 words")
        delta = next(e for e in await h.events(s) if e.type == "text.delta")
        events = await fork_of(h, s, at_seq=delta.seq)
        tail = events[delta.seq :]
        assert [e.type for e in tail] == ["message", "turn.ended"]
        assert tail[0].data["truncated"] is True
        assert tail[0].data["content"] == delta.data["text"]
        assert tail[0].data["message_id"] == delta.data["message_id"]


async def test_a_fork_in_a_subtask_ends_the_subtask_too() -> None:
    async with open_runtime() as h:
        s = await h.session()
        await finished(h, s, "first explain hello.py then explain b.py")
        started = next(e for e in await h.events(s) if e.type == "subtask.started")
        events = await fork_of(h, s, at_seq=started.seq)
        tail = events[started.seq :]
        # The subtask ends before its parent's new_task call gets its result.
        assert [e.type for e in tail] == ["subtask.ended", "tool.result", "turn.ended"]
        assert tail[0].data["subtask_id"] == started.data["subtask_id"]
        assert tail[0].data["ok"] is False
        assert tail[1].data["call_id"] == started.data["call_id"]


async def test_a_fork_at_zero_is_empty_and_past_the_end_is_refused() -> None:
    async with open_runtime() as h:
        s = await h.session("ask")
        await finished(h, s, "hello")
        assert await fork_of(h, s, at_seq=0) == []
        last = len(await h.events(s))
        with pytest.raises(CommandError) as refused:
            await h.supervisor.fork_session(s, at_seq=last + 1)
        assert refused.value.code == "invalid_request"
        assert len(await h.store.list_sessions("alice")) == 2


async def test_the_fork_takes_new_messages() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "create a.py with x")
        await h.wait_for(s, "approval.requested")
        fork = await h.supervisor.fork_session(s, title="  try   again ")
        assert fork.session.title == "try again"
        assert fork.session.current_agent == "coder"
        last = fork.state.last_seq
        await finished(h, fork.session, "hello", after=last)
        types = [e.type for e in await h.store.read_events(fork.session.id, after=last)]
        assert types[:2] == ["user.message", "turn.started"]
        assert types.count("turn.ended") == 1
        await h.assert_paired(fork.session)


async def test_the_fork_is_durable_and_its_queued_message_starts_no_turn(tmp_path: Path) -> None:
    db = tmp_path / "sessions.db"
    async with open_sqlite_store(db) as store, open_runtime(store=store) as h:
        s = await h.session("coder")
        await h.message(s, "create a.py with x")
        await h.wait_for(s, "approval.requested")
        await h.message(s, "hello")  # waits behind the turn: no turn.started
        fork = await h.supervisor.fork_session(s)
        log = await h.events(fork.session)
        assert log[fork.at_seq - 1].type == "user.message"
        assert log[-1].type == "turn.ended"
    async with open_sqlite_store(db) as store, open_runtime(store=store) as h:
        assert await h.events(fork.session) == log
        assert await h.store.get_session(fork.session.id) == fork.session
        assert {t.session_id for t in await h.store.active_turns()} == {s.id}
        await finished(h, fork.session, "hello again", after=len(log))
        started = [e for e in await h.events(fork.session) if e.type == "turn.started"]
        assert started[-1].data["user_message_seq"] == len(log) + 1


async def test_a_fork_counts_against_the_owners_session_limit() -> None:
    async with open_runtime() as h:
        s = await h.session("ask")
        with pytest.raises(SessionLimitReached):
            await h.supervisor.fork_session(s, max_live_sessions=1)
        assert [x.id for x in await h.store.list_sessions("alice")] == [s.id]


# -- the store's import ---------------------------------------------------------


Opener = Callable[[], AbstractAsyncContextManager[GroupCommitStore]]


@pytest.fixture(params=["memory", "sqlite"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    if request.param == "memory":
        return open_memory_store
    return lambda: open_sqlite_store(tmp_path / "s.db")


@pytest.fixture
async def store(opener: Opener) -> AsyncIterator[GroupCommitStore]:
    async with opener() as opened:
        yield opened


def imported(session: Session, *seqs: int) -> list[Event]:
    return [
        Event(session.id, seq, "note", 1000.0 + seq, {"n": seq}, "turn_x" if seq > 1 else None)
        for seq in seqs
    ]


def a_session() -> Session:
    t = now()
    return Session(new_id("ses"), "alice", "imported", t, t, "ask")


async def test_import_keeps_each_events_ts_and_appends_continue(store: GroupCommitStore) -> None:
    session = a_session()
    events = imported(session, 1, 2, 3)
    await store.import_session(session, events)
    assert [envelope(e) for e in await store.read_events(session.id)] == [
        envelope(e) for e in events
    ]
    assert await store.get_session(session.id) == session
    committed = await store.append(Append(session.id, (NewEvent("note", {"n": 4}),)))
    assert [e.seq for e in committed.events] == [4]


async def test_import_refuses_an_existing_id_and_bad_logs(store: GroupCommitStore) -> None:
    session = a_session()
    await store.import_session(session, [], max_live_sessions=1)
    with pytest.raises(Conflict):
        await store.import_session(session, imported(session, 1))
    with pytest.raises(SessionLimitReached):
        await store.import_session(a_session(), [], max_live_sessions=1)
    other = a_session()
    with pytest.raises(ValueError, match="must be 1"):
        await store.import_session(other, imported(other, 2))
    with pytest.raises(ValueError, match="of session"):
        await store.import_session(other, imported(session, 1))
    with pytest.raises(ValueError, match="deleted"):
        await store.import_session(attrs.evolve(other, deleted=True), [])
    assert await store.get_session(other.id) is None
    assert await store.read_events(session.id) == []
