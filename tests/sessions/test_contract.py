"""The SessionStore contract, run against both the memory and the SQLite store."""

from __future__ import annotations

import attrs
import pytest
import trio

from sessions import (
    Append,
    ApprovalStatus,
    Committed,
    Conflict,
    GroupCommitStore,
    NewEvent,
    SessionNotFound,
    StoreClosed,
    StoreError,
    TurnStatus,
)

from .helpers import (
    Opener,
    append_events,
    assert_contiguous,
    command,
    create_session,
    ev,
    make_approval,
    make_session,
    make_turn,
    resolved,
)

# --- sessions ---------------------------------------------------------------------------


async def test_create_and_get_session(store: GroupCommitStore) -> None:
    session = await create_session(store)
    assert await store.get_session(session.id) == session
    assert await store.get_session("ses_unknown") is None


async def test_list_sessions_newest_first_paginated_per_owner(store: GroupCommitStore) -> None:
    mine = [await create_session(store, "alice", created_at=1000.0 + i) for i in range(7)]
    # Same created_at: the id breaks the tie, and pagination must not skip it.
    twins = [await create_session(store, "alice", created_at=2000.0) for _ in range(2)]
    await create_session(store, "bob", created_at=5000.0)

    expected = sorted(mine + twins, key=lambda s: (s.created_at, s.id), reverse=True)
    pages: list[list[str]] = []
    before: tuple[float, str] | None = None
    while True:
        page = await store.list_sessions("alice", limit=3, before=before)
        if not page:
            break
        pages.append([s.id for s in page])
        before = (page[-1].created_at, page[-1].id)
    assert [len(p) for p in pages] == [3, 3, 3]
    assert [sid for page in pages for sid in page] == [s.id for s in expected]
    assert [s.owner for s in await store.list_sessions("bob")] == ["bob"]
    assert await store.list_sessions("carol") == []


async def test_rename_and_switch_agent_go_through_append(store: GroupCommitStore) -> None:
    session = await create_session(store)
    renamed = attrs.evolve(session, title="new title", current_agent="coder", updated_at=2000.0)
    await store.append(Append(session_id=session.id, session=renamed))
    assert await store.get_session(session.id) == renamed
    assert (await store.list_sessions("alice"))[0].title == "new title"


async def test_soft_delete_hides_the_session_and_refuses_writes(store: GroupCommitStore) -> None:
    session = await create_session(store)
    await append_events(store, session.id, ev())
    gone = attrs.evolve(session, deleted=True)
    # The deleting append may still close things off with a final event.
    result = await store.append(
        Append(session_id=session.id, session=gone, events=(ev("session.deleted"),))
    )
    assert result.last_seq == 2
    assert await store.get_session(session.id) is None
    assert await store.list_sessions("alice") == []
    with pytest.raises(SessionNotFound):
        await append_events(store, session.id, ev())
    with pytest.raises(SessionNotFound):
        async with store.subscribe(session.id):
            pass
    # The log itself is kept (soft delete).
    assert len(await store.read_events(session.id)) == 2


async def test_writes_for_an_unknown_session_fail_alone(store: GroupCommitStore) -> None:
    session = await create_session(store)
    outcomes: dict[str, Committed | StoreError] = {}

    async def put(name: str, session_id: str) -> None:
        try:
            outcomes[name] = await append_events(store, session_id, ev())
        except StoreError as exc:
            outcomes[name] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(put, "known", session.id)
        nursery.start_soon(put, "unknown", "ses_unknown")
        nursery.start_soon(put, "other", "ses_other")
    assert isinstance(outcomes["known"], Committed)
    assert isinstance(outcomes["unknown"], SessionNotFound)
    assert isinstance(outcomes["other"], SessionNotFound)
    with pytest.raises(SessionNotFound):
        await store.append(Append(session_id="ses_x", turn=make_turn("ses_x")))
    assert await store.read_events("ses_unknown") == []


async def test_mismatched_parts_are_a_caller_bug(store: GroupCommitStore) -> None:
    session = await create_session(store)
    with pytest.raises(ValueError, match="carries a turn"):
        await store.append(Append(session_id=session.id, turn=make_turn("ses_other")))


# --- events -----------------------------------------------------------------------------


async def test_append_assigns_contiguous_seqs_and_reads_back(store: GroupCommitStore) -> None:
    session = await create_session(store)
    first = await append_events(store, session.id, ev(text="a"), ev(text="b"))
    second = await store.append(
        Append(session_id=session.id, events=(NewEvent("message", {"content": "c"}, "turn_1"),))
    )
    assert [e.seq for e in first.events] == [1, 2]
    assert second.last_seq == 3
    events = await store.read_events(session.id)
    assert_contiguous(events)
    assert [e.data for e in events] == [{"text": "a"}, {"text": "b"}, {"content": "c"}]
    assert events[2].turn_id == "turn_1"
    assert events[2].session_id == session.id
    assert list(await store.read_events(session.id, after=1, limit=1)) == [events[1]]
    assert await store.read_events(session.id, after=3) == []


async def test_seqs_are_per_session(store: GroupCommitStore) -> None:
    a = await create_session(store)
    b = await create_session(store)
    await append_events(store, a.id, ev(), ev())
    result = await append_events(store, b.id, ev())
    assert result.last_seq == 1


async def test_subscribe_replays_then_follows(store: GroupCommitStore) -> None:
    session = await create_session(store)
    await append_events(store, session.id, *(ev(i=i) for i in range(5)))
    async with store.subscribe(session.id, after=2) as sub:
        replayed = await sub.receive_batch()
        assert [e.seq for e in replayed] == [3, 4, 5]
        assert sub.last_seq == 5
        await append_events(store, session.id, ev(i=5), ev(i=6))
        live: list[int] = []
        async for event in sub:
            live.append(event.seq)
            if event.seq == 7:
                break
        assert live == [6, 7]
        assert sub.last_seq == 7


async def test_subscription_ends_cleanly_when_the_store_closes(opener: Opener) -> None:
    got: list[int] = []
    async with trio.open_nursery() as nursery, opener() as store:
        session = await create_session(store)
        await append_events(store, session.id, ev())
        caught_up = trio.Event()

        async def follow() -> None:
            async with store.subscribe(session.id) as sub:
                got.extend(e.seq for e in await sub.receive_batch())
                caught_up.set()
                assert await sub.receive_batch() == []
                got.append(-1)

        nursery.start_soon(follow)
        await caught_up.wait()
    assert got == [1, -1]


async def test_closed_store_refuses_everything(opener: Opener) -> None:
    async with opener() as store:
        session = await create_session(store)
    with pytest.raises(StoreClosed):
        await append_events(store, session.id, ev())
    with pytest.raises(StoreClosed):
        await store.read_events(session.id)
    with pytest.raises(StoreClosed):
        await store.get_session(session.id)


# --- idempotency ------------------------------------------------------------------------


async def test_repeated_command_id_has_one_effect(store: GroupCommitStore) -> None:
    session = await create_session(store)
    first = await store.append(
        Append(session_id=session.id, events=(ev(n=1),), command=command(session.id, "c1"))
    )
    again = await store.append(
        Append(
            session_id=session.id,
            events=(ev(n=2),),
            command=command(session.id, "c1", status="other"),
        )
    )
    assert not first.duplicate
    assert first.ack == {"id": "c1", "status": "accepted"}
    assert again.duplicate
    assert again.ack == first.ack
    assert again.events == first.events
    assert [e.data for e in await store.read_events(session.id)] == [{"n": 1}]
    looked_up = await store.get_command(session.id, "c1")
    assert looked_up == Committed(events=first.events, duplicate=True, ack=first.ack)
    assert await store.get_command(session.id, "c2") is None


async def test_duplicate_inside_one_batch(store: GroupCommitStore) -> None:
    session = await create_session(store)
    results: list[Committed] = []

    async def send(n: int) -> None:
        results.append(
            await store.append(
                Append(session_id=session.id, events=(ev(n=n),), command=command(session.id, "c"))
            )
        )

    async with trio.open_nursery() as nursery:
        for n in range(5):
            nursery.start_soon(send, n)
    assert sorted(r.duplicate for r in results) == [False, True, True, True, True]
    assert len(await store.read_events(session.id)) == 1


async def test_command_without_events_is_recorded(store: GroupCommitStore) -> None:
    session = await create_session(store)
    await store.append(Append(session_id=session.id, command=command(session.id, "cancel-1")))
    again = await store.append(
        Append(session_id=session.id, command=command(session.id, "cancel-1"))
    )
    assert again.duplicate
    assert again.events == ()


# --- turns ------------------------------------------------------------------------------


async def test_turn_upsert_and_active_turns(store: GroupCommitStore) -> None:
    session = await create_session(store)
    other = await create_session(store)
    running = make_turn(session.id, TurnStatus.RUNNING, started_at=2.0)
    queued = make_turn(session.id, TurnStatus.QUEUED, started_at=3.0)
    waiting = make_turn(other.id, TurnStatus.AWAITING_APPROVAL, started_at=1.0)
    done = make_turn(other.id, TurnStatus.COMPLETED, started_at=0.5)
    for turn in (running, queued, waiting, done):
        await store.append(Append(session_id=turn.session_id, turn=turn))
    assert await store.get_turn(running.id) == running
    assert [t.id for t in await store.active_turns()] == [waiting.id, running.id, queued.id]
    # Of some sessions only (what a replica asks of sessions another one runs).
    assert [t.id for t in await store.active_turns([session.id])] == [running.id, queued.id]
    assert [t.id for t in await store.active_turns([other.id, "ses_x"])] == [waiting.id]
    assert await store.active_turns([]) == []

    finished = attrs.evolve(running, status=TurnStatus.COMPLETED, state={}, updated_at=9.0)
    await store.append(
        Append(session_id=session.id, turn=finished, events=(ev("turn.ended", reason="done"),))
    )
    assert await store.get_turn(running.id) == finished
    assert running.id not in [t.id for t in await store.active_turns()]

    # Turns of deleted sessions are not resumed.
    await store.append(Append(session_id=other.id, session=attrs.evolve(other, deleted=True)))
    assert [t.id for t in await store.active_turns()] == [queued.id]


# --- approvals --------------------------------------------------------------------------


async def test_approval_lifecycle(store: GroupCommitStore) -> None:
    session = await create_session(store)
    pending = make_approval(session.id)
    await store.append(
        Append(
            session_id=session.id,
            approval=pending,
            events=(ev("approval.requested", call_id="call_1"),),
        )
    )
    assert await store.get_approval(session.id, "call_1") == pending
    assert await store.pending_approvals(session.id) == [pending]

    approved = resolved(pending, ApprovalStatus.APPROVED)
    await store.append(Append(session_id=session.id, approval=approved))
    assert await store.get_approval(session.id, "call_1") == approved
    assert await store.pending_approvals(session.id) == []

    with pytest.raises(Conflict, match="already approved"):
        await store.append(
            Append(
                session_id=session.id,
                approval=resolved(pending, ApprovalStatus.REJECTED),
                events=(ev("approval.resolved"),),
            )
        )
    # The refused append wrote nothing, not even its event, and used no seq.
    assert (await append_events(store, session.id, ev())).last_seq == 2
    assert await store.get_approval(session.id, "call_1") == approved


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (None, ApprovalStatus.APPROVED),  # resolving what was never requested
        (ApprovalStatus.PENDING, ApprovalStatus.PENDING),  # requesting twice
        (ApprovalStatus.EXPIRED, ApprovalStatus.REJECTED),
        (ApprovalStatus.CANCELLED, ApprovalStatus.PENDING),
    ],
)
async def test_refused_approval_transitions(
    store: GroupCommitStore, first: ApprovalStatus | None, second: ApprovalStatus
) -> None:
    session = await create_session(store)
    base = make_approval(session.id)
    if first is not None:
        await store.append(Append(session_id=session.id, approval=base))
        if first is not ApprovalStatus.PENDING:
            await store.append(Append(session_id=session.id, approval=resolved(base, first)))
    with pytest.raises(Conflict):
        await store.append(Append(session_id=session.id, approval=resolved(base, second)))


async def test_conflict_fails_alone_in_its_batch(store: GroupCommitStore) -> None:
    session = await create_session(store)
    pending = make_approval(session.id)
    await store.append(Append(session_id=session.id, approval=pending))
    outcomes: list[Committed | StoreError] = []

    async def resolve(status: ApprovalStatus) -> None:
        try:
            outcomes.append(
                await store.append(
                    Append(
                        session_id=session.id,
                        approval=resolved(pending, status),
                        events=(ev("approval.resolved", decision=status.value),),
                    )
                )
            )
        except StoreError as exc:
            outcomes.append(exc)

    async def other_events() -> None:
        outcomes.append(await append_events(store, session.id, ev(), ev()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(resolve, ApprovalStatus.APPROVED)
        nursery.start_soon(other_events)
        nursery.start_soon(resolve, ApprovalStatus.REJECTED)
    assert sum(isinstance(o, Conflict) for o in outcomes) == 1
    assert sum(isinstance(o, Committed) for o in outcomes) == 2
    events = await store.read_events(session.id)
    assert_contiguous(events)
    assert len(events) == 3
    final = await store.get_approval(session.id, "call_1")
    assert final is not None
    assert final.status in (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED)
    decisions = [e.data["decision"] for e in events if e.type == "approval.resolved"]
    assert decisions == [final.status.value]


async def test_pending_approvals_of_all_live_sessions(store: GroupCommitStore) -> None:
    a = await create_session(store)
    b = await create_session(store)
    gone = await create_session(store)
    first = make_approval(a.id, "c1", requested_at=2.0)
    second = make_approval(b.id, "c2", requested_at=1.0)
    third = make_approval(gone.id, "c3", requested_at=3.0)
    for approval in (first, second, third):
        await store.append(Append(session_id=approval.session_id, approval=approval))
    await store.append(
        Append(session_id=a.id, approval=make_approval(a.id, "c4", requested_at=4.0))
    )
    await store.append(
        Append(session_id=a.id, approval=resolved(make_approval(a.id, "c4"), ApprovalStatus.EDITED))
    )
    await store.append(Append(session_id=gone.id, session=attrs.evolve(gone, deleted=True)))
    assert await store.pending_approvals() == [second, first]
    assert await store.pending_approvals(a.id) == [first]


async def test_session_created_with_its_first_events(store: GroupCommitStore) -> None:
    session = make_session()
    result = await store.append(
        Append(session_id=session.id, session=session, events=(ev("message"),))
    )
    assert result.last_seq == 1
