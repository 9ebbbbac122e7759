"""Forking a session: a new session whose log is a prefix of another's, closed cleanly.

The fork's log is the original's events ``1..at_seq``, copied with the same seq,
type, payload, ``ts`` and ``turn_id``, then, if a turn was open at ``at_seq``,
the events that close it (:mod:`agents._closing`): cancelled approvals, the
partial text as a truncated message, failed results for the pending calls,
failed subtasks and ``turn.ended {reason: "interrupted"}``. The fold of the
fork therefore has no open turn, pending call, open subtask or partial text,
and the fork takes new messages like any session.

Only the log is copied. Turn rows are not (a user message still queued at
``at_seq`` stays in the log but never starts a turn in the fork), nor approval
rows or idempotency records. The original is only read: its events up to
``at_seq`` are committed, so they cannot change under the copy.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from sessions import Event, Session, SessionStore, dumps, new_id

from ._closing import approval_closings, final_closings
from ._core._state import FORKED, SessionState
from ._errors import CommandError
from ._live_turn import Out

WHY = FORKED  # the failed result of each call the fork cut off
SUFFIX = " (fork)"
MAX_TITLE = 120
PAGE = 512  # events read per query


@attrs.frozen
class Fork:
    """A fork about to be written: its row, its whole log and the state it folds to."""

    session: Session
    events: list[Event]
    state: SessionState
    at_seq: int  # the last copied seq (the rest of ``events`` closes the open turn)


async def read_prefix(store: SessionStore, session_id: str, at_seq: int | None) -> list[Event]:
    """The events of *session_id* with seq ``1..at_seq`` (all of them when ``None``).

    Raises:
        CommandError: ``invalid_request`` when *at_seq* is past the last event.
    """
    events: list[Event] = []
    while at_seq is None or len(events) < at_seq:
        want = PAGE if at_seq is None else min(PAGE, at_seq - len(events))
        page = await store.read_events(session_id, after=len(events), limit=want)
        events += page
        if len(page) < want:
            break
    if at_seq is not None and len(events) < at_seq:
        raise CommandError(
            "invalid_request",
            f"field 'at_seq' ({at_seq}) is past the session's last event (seq {len(events)})",
        )
    return events


def fork_title(original: str, title: str | None) -> str:
    """*title*, or the original's title marked as a fork (at most 120 characters)."""
    if title is not None:
        return " ".join(title.split())[:MAX_TITLE]
    return (original[: MAX_TITLE - len(SUFFIX)] + SUFFIX).strip()


def plan_fork(
    source: Session,
    prefix: Sequence[Event],
    *,
    title: str | None,
    agents: Sequence[str],
    ts: float,
) -> Fork:
    """The fork of *source* whose log copies *prefix*, closed at time *ts*.

    Its ``current_agent`` is the agent the log had at the cut (the original's
    if none, or if that agent no longer exists in *agents*).
    """
    fork_id = new_id("ses")
    events = [attrs.evolve(event, session_id=fork_id) for event in prefix]
    state = SessionState(fork_id)
    state.apply_all(events)
    events += close_open_turn(state, ts, source.current_agent)
    agent = state.agent if state.agent is not None and state.agent in agents else None
    session = attrs.evolve(
        source,
        id=fork_id,
        title=fork_title(source.title, title),
        created_at=ts,
        updated_at=ts,
        current_agent=agent or source.current_agent,
        deleted=False,
    )
    return Fork(session, events, state, len(prefix))


def close_open_turn(state: SessionState, ts: float, agent: str) -> list[Event]:
    """The events closing the turn open in *state* (none if none), folded into it.

    Truncated messages are written by the state's agent (*agent* if it has none).
    """
    turn_id = state.open_turn
    if turn_id is None:
        return []
    closing: list[Event] = []

    def add(outs: Sequence[Out]) -> None:
        for out in outs:
            new = out.to_new(turn_id)
            event = Event(
                state.session_id,
                state.last_seq + 1,
                new.type,
                ts,
                new.data,
                new.turn_id,
                payload_text=dumps(new.data),
            )
            state.apply(event, out.event)
            closing.append(event)

    for _, outs in approval_closings(state, turn_id, WHY):
        add(outs)
    add(final_closings(state, turn_id, state.agent or agent, "interrupted", WHY))
    return closing
