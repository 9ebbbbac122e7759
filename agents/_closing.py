"""What closing an open turn takes: the events that leave nothing of it open.

Pure functions of the folded :class:`~agents._core._state.SessionState`: they
decide the events, the caller commits them. :func:`~agents._turn.close_turn`
commits them for a live turn (ended, cancelled, interrupted, recovered after a
crash); :mod:`agents._fork` appends them to a forked log cut in the middle of a
turn. Closing happens in two steps, because an append carries one approval row:

1. :func:`approval_closings`: each call of the turn still waiting for a human
   decision gets ``approval.resolved {decision: cancel, by: cancel}`` and a
   failed ``tool.result``, one call per commit;
2. :func:`final_closings`, computed from the state *after* step 1: the error
   (if any), every partial streamed text as a truncated ``message``, an
   estimated ``usage`` for each LLM call cut while it answered, then context
   by context from the innermost out, a failed ``tool.result`` for each of its
   pending calls and a failed ``subtask.ended`` for it (so a subtask ends before
   the ``new_task`` call of its parent gets its result), then the single
   ``turn.ended``.

Recovery has one more: :func:`lost_server_calls` resolves the calls a turn ran
in the runtime itself (MCP tools) when the runtime stopped, as failed with their
effect unknown, so the turn can carry on without ever running them again.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._core._budget import estimate_tokens
from ._core._events import (
    ApprovalResolved,
    AssistantMessage,
    ErrorEvent,
    SubtaskEnded,
    ToolResultEvent,
    TurnEnded,
    TurnEndReason,
    UsageEvent,
)
from ._core._mcp import split_name
from ._core._state import CallState, PendingCall, SessionState
from ._live_turn import AnsweringCall, Out


def approval_closings(state: SessionState, turn_id: str, why: str) -> list[tuple[str, list[Out]]]:
    """``(call_id, outs)`` cancelling each approval turn *turn_id* still waits for.

    *why* is the failed result's text (what the LLM later reads as the result).
    Commit each entry on its own, with the call's approval row resolved as
    cancelled.
    """
    return [
        (
            call.call_id,
            [
                Out(ApprovalResolved(call.call_id, "cancel", "cancel"), call.subtask_id),
                Out(ToolResultEvent(call.call_id, False, why, why), call.subtask_id),
            ],
        )
        for call in state.pending_of_turn(turn_id)
        if call.state is CallState.APPROVAL
    ]


def final_closings(
    state: SessionState,
    turn_id: str,
    agent: str,
    reason: TurnEndReason,
    why: str,
    error: ErrorEvent | None = None,
    context: tuple[int, int] | None = None,
    answering: Mapping[str, AnsweringCall] | None = None,
) -> list[Out]:
    """The events that end turn *turn_id* once its approvals are closed.

    *agent* writes the truncated messages; *why* is the text of the failed
    results and subtasks; *error* (if any) comes first. *answering* are the
    turn's LLM calls cut while the model answered (by message id): each gets
    an estimated ``usage``, counted in the turn's totals.
    """
    outs = [Out(error)] if error is not None else []
    for message_id, text in list(state.partial_text.items()):
        sub = state.partial_context.get(message_id)
        outs.append(Out(AssistantMessage(message_id, text, agent, True), sub))
    totals = state.turn_usage
    for message_id, cut in (answering or {}).items():
        usage = estimated_usage(cut, state.partial_text.get(message_id, ""))
        outs.append(Out(usage, cut.subtask_id))
        totals = totals.add(usage)
    # Innermost context first: a subtask's own calls, then the subtask itself, then
    # in the parent's context the new_task call it answers, as when a subtask
    # finishes. A client nesting its view by subtask never sees a call
    # close while the subtask it started is still open.
    pending = state.pending_of_turn(turn_id)
    open_subtasks = state.open_subtasks
    deepest_first = sorted(open_subtasks, key=state.subtask_depth, reverse=True)
    # (A call of a subtask no longer open cannot happen; closed first all the same.)
    strays = {c.subtask_id for c in pending if c.subtask_id is not None} - open_subtasks.keys()
    contexts: list[str | None] = [*sorted(strays), *deepest_first, None]
    for ctx in contexts:
        for call in pending:
            if call.subtask_id == ctx:
                text = why if call.state is not CallState.RUNNING else _in_flight(call, why)
                outs.append(Out(ToolResultEvent(call.call_id, False, text, text), ctx))
        if ctx is not None and ctx in open_subtasks:
            outs.append(Out(SubtaskEnded(ctx, open_subtasks[ctx][1], False, why)))
    # The turn's usage totals are the fold's (every usage event of the turn,
    # subtasks and compactions included); *context* is the runner's last estimate.
    tokens, window = context if context is not None else (None, None)
    outs.append(Out(TurnEnded(reason, totals, tokens, window)))
    return outs


def estimated_usage(call: AnsweringCall, received: str) -> UsageEvent:
    """The usage of *call*, cut after the model sent *received*: estimated, and priced.

    Cached tokens are unknown, so the prompt is priced as if none were: an
    estimate errs towards what the provider may bill, never towards 0.
    """
    completion = estimate_tokens(received)
    cost = call.limits.cost(call.prompt_tokens, completion, 0)
    return UsageEvent(
        call.prompt_tokens, completion, call.model, cost=cost, purpose=call.purpose, estimated=True
    )


def lost_server_calls(state: SessionState, turn_id: str) -> list[Out]:
    """A failed ``tool.result`` for each call of *turn_id* that ran in a runtime now gone.

    The call was recorded (``tool.started``) and may have run on its server in
    full, in part or not at all: the model is told so, and decides.
    """
    outs = []
    for call in state.pending_of_turn(turn_id):
        if call.state is CallState.RUNNING:
            text = _in_flight(call, "error: the runtime stopped")
            outs.append(Out(ToolResultEvent(call.call_id, False, text, text), call.subtask_id))
    return outs


def _in_flight(call: PendingCall, why: str) -> str:
    """The result of a server-side call cut off while it ran: *why*, and that it may
    have taken effect (sent to its server, it ran there in full, in part or not)."""
    server = (split_name(call.name) or ("?", ""))[0]
    return (
        f"{why} while MCP server {server} ran {call.name}; whether the call took effect "
        "is unknown (it was not run again): check before calling it again"
    )
