"""Both sides of a restart: recovering the turns left open, winding running turns down.

On start (and whenever a session is loaded) the supervisor recovers what a crash,
a shutdown or another replica left open (SPEC §3.3 rule 7); at shutdown it winds
its running turns down so that those waiting for an answer are suspended, to be
recovered the same way. Separate from the supervisor, which owns the nursery
and the queue drivers these hand their turns to.
"""

from __future__ import annotations

from collections.abc import Callable

from sessions import LeaseHeld, SessionStore, TurnStatus

from ._closing import lost_server_calls
from ._live_turn import LiveTurn
from ._registry import SessionRegistry
from ._session import LiveSession
from ._turn import close_turn


async def recover(store: SessionStore, sessions: SessionRegistry) -> None:
    """Restart recovery (SPEC §3.3 rule 7), reading only sessions with open turns.

    Loading a session recovers its open turns (:func:`recover_orphans`); a
    session another replica holds is that replica's to run.
    """
    seen: set[str] = set()
    for turn in await store.active_turns():
        if turn.session_id in seen:
            continue
        seen.add(turn.session_id)
        session = await store.get_session(turn.session_id)
        if session is None:
            continue
        try:
            async with sessions.use(session):
                pass
        except LeaseHeld:
            continue


async def recover_orphans(
    store: SessionStore, live: LiveSession, kick: Callable[[LiveSession], None]
) -> None:
    """Recover the open turns of a session just loaded that nobody here runs.

    At start-up these are the turns a crash or a shutdown left open; with
    several replicas, also those of a replica that died or lost the session
    (taken over with its lapsed lease). Streaming turns end ``interrupted``;
    turns waiting for a tool result, approval or answer carry on; queued
    ones run in order (*kick* starts them).
    """
    state = live.state
    if state.open_turn is None and not state.user_messages:
        return  # the common case: nothing was left open (no read)
    turns = await store.active_turns([live.session.id])
    for turn in turns:
        if turn.status is TurnStatus.QUEUED:
            message_id = turn.state.get("message_id")
            seq = state.user_message_seqs.get(message_id) if isinstance(message_id, str) else None
            live.queue.append(LiveTurn(turn, seq))
            continue
        lost = lost_server_calls(state, turn.id)
        if lost:  # resolved, never re-run: the turn carries on with the failures
            await live.commit(lost, turn_id=turn.id)
        if lost or state.awaits_answer(turn.id):
            live.queue.appendleft(LiveTurn(turn, None, resume=True))
        else:  # it was working, not waiting (whatever an older version stored)
            await close_turn(live, LiveTurn(turn, None), "interrupted")
    kick(live)


async def wind_down_turn(live: LiveSession) -> None:
    """Wait for *live*'s turn to end, suspending it as soon as it waits for an answer."""
    while (running := live.running) is not None and not running.done.is_set():
        # A server-side call in progress gets the grace too (stopping it would
        # leave its effect unknown), even while another call waits for the IDE.
        state = live.state
        if state.awaits_answer(running.turn_id) and not state.runs_server_call(running.turn_id):
            running.stop(running.cancel_reason, suspend=True)
        await running.wake.wait()


async def end_turn(live: LiveSession) -> None:
    """End *live*'s running turn as ``interrupted`` (suspend it if it waits)."""
    running = live.running
    if running is not None:
        running.stop("interrupted", suspend=live.state.awaits_answer(running.turn_id))
        await running.done.wait()
