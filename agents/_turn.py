"""A turn's life: start (with routing), the agent loop, and exactly one end.

:func:`run_turn` guarantees SPEC §3.3 rules 4 and 5: whatever happens (completion,
model error, bug, cancel, shutdown) the turn is closed by :func:`close_turn`, which
commits the partial text as a truncated message, resolves every open call and
approval as cancelled, and writes the single ``turn.ended``.
"""

from __future__ import annotations

import logging

import attrs
import trio

from sessions import (
    ApprovalStatus,
    LeaseHeld,
    LeaseLost,
    StorageUnavailable,
    StoreError,
    TurnStatus,
    now,
)

from ._closing import approval_closings, final_closings
from ._core._events import ErrorEvent, TurnEndReason, TurnStarted
from ._core._model_choice import model_for
from ._core._state import cancelled_text
from ._errors import AgentError, ModelError, PairingViolation
from ._live_turn import LiveTurn, Out
from ._runner import StepsExhausted, TurnRunner
from ._session import LiveSession
from ._session_commands import COMPACT_KEY

log = logging.getLogger("agent_runtime.turn")

ROUTER = "orchestrator"

_FINAL_STATUS: dict[TurnEndReason, TurnStatus] = {
    "completed": TurnStatus.COMPLETED,
    "cancelled": TurnStatus.CANCELLED,
    "error": TurnStatus.ERROR,
    "max_steps": TurnStatus.MAX_STEPS,
    "interrupted": TurnStatus.INTERRUPTED,
}


async def run_turn(runner: TurnRunner, *, grace: float) -> None:
    """Run one turn to its ``turn.ended``.

    Cancellation: cancelling ``running.scope`` (cancel command, interrupt,
    shutdown) ends the turn with ``running.cancel_reason``; an outer cancellation
    ends it as ``interrupted``. The closing write is shielded and limited to
    *grace* seconds.

    A store that refuses writes (disk full) fails the turn with an
    ``error {code: "storage_unavailable", retryable: true}``. If the closing write
    fails, or does not finish within *grace*, ``running.unclosed`` says how to
    close the turn and the caller retries until it is written: ``turn.ended`` is
    never dropped.
    """
    running = runner.live_turn
    reason: TurnEndReason | None = None
    error: ErrorEvent | None = None
    try:
        with running.scope:
            if not running.resume:
                await start_turn(runner)
            state = runner.live.state
            if state.open_turn == runner.turn.id:
                # The budget is the turn's: resumed, it goes on with what is left.
                runner.steps = state.turn_steps
            runner.agents[None] = state.agent or runner.turn.agent
            if runner.turn.state.get(COMPACT_KEY):
                await runner.compact_now(runner.turn.state.get("instructions"))
            else:
                await runner.agent_loop(runner.agents[None])
            reason = "completed"
    except StepsExhausted:
        reason = "max_steps"
    except ModelError as exc:
        reason, error = "error", ErrorEvent(exc.code, str(exc), exc.retryable)
    except PairingViolation as exc:
        reason, error = "error", ErrorEvent("pairing_violation", str(exc), False)
    except AgentError as exc:
        reason, error = "error", ErrorEvent("agent_error", str(exc), False)
    except (LeaseLost, LeaseHeld) as exc:
        # Another replica took the session over: it recovers this turn from the
        # log, so nothing more is written from here (not even turn.ended).
        log.warning("turn %s stops here: %s", runner.turn.id, exc)
        runner.live.lost = True
        running.suspend = True
    except StoreError as exc:
        log.warning("turn %s failed: the store refused a write: %s", runner.turn.id, exc)
        retryable = isinstance(exc, StorageUnavailable)
        code = "storage_unavailable" if retryable else "store_error"
        reason, error = "error", ErrorEvent(code, str(exc), retryable)
    except Exception as exc:
        log.exception("turn %s failed", runner.turn.id)
        reason, error = (
            "error",
            ErrorEvent("internal", f"internal error: {type(exc).__name__}", False),
        )
    finally:
        if reason is None:
            reason = running.cancel_reason if running.scope.cancel_called else "interrupted"
        if not running.suspend:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + grace) as closing:
                try:
                    await close_turn(runner.live, running, reason, error)
                except StoreError as exc:
                    log.warning("turn %s stays open for now: %s", runner.turn.id, exc)
                    running.unclosed = ("interrupted", None)
            if closing.cancelled_caught:
                # Never silently: a turn whose turn.ended is not written is retried
                # by its session's driver (or closed by restart recovery).
                log.error(
                    "turn %s: closing took longer than %g s; its turn.ended is retried",
                    runner.turn.id,
                    grace,
                )
                running.unclosed = (reason, error)
        running.finish()


async def start_turn(runner: TurnRunner) -> None:
    """Commit ``turn.started``; an orchestrator turn first routes the message."""
    live = runner.live
    seq = runner.live_turn.user_message_seq
    runner.turn = attrs.evolve(runner.turn, status=TurnStatus.RUNNING, updated_at=now())
    mode = runner.modes.modes.get(runner.turn.agent)
    model = None if mode is None else model_for(live.state, None, mode, runner.config.model)
    started = Out(TurnStarted(runner.turn.agent, seq, model))
    await live.commit([started], turn_id=runner.turn.id, turn=runner.turn)
    runner.agents[None] = runner.turn.agent
    if runner.turn.agent != ROUTER or seq is None:
        return
    content = live.state.messages[-1].content if live.state.messages else None
    target, why = await runner.route(content or "")
    if target != ROUTER:
        refusal = await runner.switch(target, why, None)
        if refusal is not None:
            log.warning("routing to %s refused: %s", target, refusal)


async def close_turn(
    live: LiveSession, turn: LiveTurn, reason: TurnEndReason, error: ErrorEvent | None = None
) -> None:
    """Close *turn*: truncated text, cancelled calls and approvals, one ``turn.ended``.

    Works from the committed state alone, so recovery after a crash uses it too.
    Does nothing if the turn already ended.

    Cancellation: callers shield it; every write is atomic.
    """
    state = live.state
    async with live.locked():
        current = turn.row
        if not current.status.active:
            return
        why = cancelled_text(reason)
        for call_id, outs in approval_closings(state, current.id, why):
            approval = live.close_approval(
                call_id, ApprovalStatus.CANCELLED, {"decision": "cancel"}, "cancel"
            )
            await live.commit_locked(outs, turn_id=current.id, approval=approval)
        agent = state.agent or current.agent
        outs = final_closings(
            state, current.id, agent, reason, why, error, turn.context, turn.answering
        )
        final = attrs.evolve(current, status=_FINAL_STATUS[reason], updated_at=now())
        await live.commit_locked(outs, turn_id=current.id, turn=final)
        turn.row = final
        live.metrics.turns_ended.labels(reason).inc()
