"""Client commands (SPEC §3.1) applied to a session actor.

Each handler checks the command against the committed state and commits its
effect together with the command's idempotency record in one atomic write, all
under the actor's lock, so two commands can never both resolve the same call.
Handlers raise :class:`CommandError` for anything they refuse.
"""

from __future__ import annotations

import attrs

from sessions import (
    JSON,
    ApprovalStatus,
    CommandRecord,
    Committed,
    Turn,
    TurnStatus,
    dumps,
    new_id,
    now,
)

from ._actor import LiveTurn, Out, SessionActor
from ._core._commands import Ack, Answer, SubmitApproval, SubmitToolResult, SwitchAgent
from ._core._events import (
    AgentSwitched,
    ApprovalResolved,
    QuestionAnswered,
    ToolCallEvent,
    ToolResultEvent,
    TurnEnded,
    UserMessage,
    summarize,
)
from ._core._modes import ModeRegistry
from ._core._state import REMEMBER_KEY, CallState, PendingCall
from ._core._tools import validate_arguments
from ._errors import CommandError, ToolError

TITLE_LIMIT = 120


def record(actor: SessionActor, ack: Ack) -> CommandRecord:
    return CommandRecord(actor.session.id, ack.id, ack.to_json())


def duplicate_ack(committed: Committed, command_id: str) -> Ack:
    """The original ack of a repeated command id, marked ``duplicate``."""
    original = Ack.from_json(committed.ack) if committed.ack else Ack(command_id, "accepted")
    return attrs.evolve(original, status="duplicate")


def _result_text(result: JSON) -> str:
    return result if isinstance(result, str) else dumps(result)


async def enqueue_message(
    actor: SessionActor,
    modes: ModeRegistry,
    *,
    command_id: str,
    content: str,
    agent: str | None,
    on_busy: str,
    max_queued: int,
    switch_reason: str = "requested by the user",
) -> tuple[Ack, LiveTurn | None]:
    """Commit a user message and its queued turn; the caller starts the queue.

    Returns the ack and the queued turn (``None`` for a duplicate command id).
    """
    if agent is not None and agent not in modes.names():
        raise CommandError(
            "unknown_agent", f"unknown agent {agent!r}; agents: {', '.join(modes.names())}"
        )
    if actor.busy and on_busy == "reject":
        running = actor.running.turn_id if actor.running else "a queued turn"
        raise CommandError("busy", f"the session is busy ({running}); retry or use on_busy=queue")
    if len(actor.queue) >= max_queued:
        raise CommandError("queue_full", f"at most {max_queued} messages may wait per session")
    session = actor.session
    outs: list[Out] = []
    if agent is not None and agent != session.current_agent:
        outs.append(Out(AgentSwitched(session.current_agent, agent, switch_reason)))
    message_id = new_id("msg")
    outs.append(Out(UserMessage(message_id, content, agent)))
    turn = Turn(
        new_id("turn"),
        session.id,
        agent or session.current_agent,
        TurnStatus.QUEUED,
        now(),
        now(),
        {"message_id": message_id},
    )
    title = session.title or " ".join(content.split())[:TITLE_LIMIT]
    updated = attrs.evolve(
        session, title=title, current_agent=agent or session.current_agent, updated_at=now()
    )
    ack = Ack.accepted(command_id, turn.id)
    committed = await actor.commit_locked(
        outs, session=updated, turn=turn, command=record(actor, ack)
    )
    if committed.duplicate:
        return duplicate_ack(committed, command_id), None
    queued = LiveTurn(turn, actor.state.user_message_seqs.get(message_id))
    if on_busy == "interrupt":
        actor.queue.appendleft(queued)
        if actor.running is not None:
            actor.running.cancel_reason = "interrupted"
            actor.running.scope.cancel()
    else:
        actor.queue.append(queued)
    return ack, queued


_WAITS_FOR = {
    CallState.REQUESTED: "nothing from the client yet",
    CallState.APPROVAL: "an approval",
    CallState.TOOL: "a tool_result",
    CallState.QUESTION: "an answer",
}


def _pending(actor: SessionActor, call_id: str, want: CallState, what: str) -> PendingCall:
    call = actor.state.pending.get(call_id)
    if call is None:
        if call_id in actor.state.known_calls:
            raise CommandError("already_resolved", f"{what} {call_id!r} was already answered")
        raise CommandError("unknown_call", f"no {what} {call_id!r} in this session")
    if call.state is not want:
        raise CommandError(
            "not_waiting",
            f"call {call_id!r} is not waiting for {_WAITS_FOR[want]}; "
            f"it waits for {_WAITS_FOR[call.state]}",
        )
    return call


async def _refuse_decided(actor: SessionActor, call_id: str) -> None:
    """Refuse a second decision on an approval with ``already_resolved``.

    After an approve the call stays pending (it now waits for its tool result), so
    only the stored approval can tell "decided already" from "never asked".
    """
    call = actor.state.pending.get(call_id)
    if call is not None and call.state is CallState.APPROVAL:
        return
    approval = await actor.store.get_approval(actor.session.id, call_id)
    if approval is not None and approval.status is not ApprovalStatus.PENDING:
        raise CommandError(
            "already_resolved",
            f"approval {call_id!r} was already resolved ({approval.status.value})",
        )


async def submit_tool_result(actor: SessionActor, cmd: SubmitToolResult) -> Ack:
    call = _pending(actor, cmd.call_id, CallState.TOOL, "tool call")
    ok = cmd.error is None
    # The prefix tells any model, not only the scripted one, that the call failed.
    content = f"error: {cmd.error}" if cmd.error is not None else _result_text(cmd.result)
    ack = Ack.accepted(cmd.id, call.turn_id)
    out = Out(ToolResultEvent(call.call_id, ok, summarize(content), content), call.subtask_id)
    committed = await actor.commit_locked([out], turn_id=call.turn_id, command=record(actor, ack))
    return duplicate_ack(committed, cmd.id) if committed.duplicate else ack


async def submit_approval(actor: SessionActor, modes: ModeRegistry, cmd: SubmitApproval) -> Ack:
    await _refuse_decided(actor, cmd.call_id)
    call = _pending(actor, cmd.call_id, CallState.APPROVAL, "approval")
    sub = call.subtask_id
    extra: dict[str, JSON] = {REMEMBER_KEY: cmd.remember} if cmd.remember == "session" else {}
    outs: list[Out]
    match cmd.decision:
        case "approve":
            status = ApprovalStatus.APPROVED
            arguments = call.arguments_object()
            outs = [
                Out(ApprovalResolved(call.call_id, "approve", cmd.by), sub, extra),
                Out(ToolCallEvent(call.call_id, call.name, arguments), sub),
            ]
        case "edit":
            status = ApprovalStatus.EDITED
            try:
                arguments = validate_arguments(call.name, cmd.arguments or {})
                modes.check_call(call.agent, call.name, arguments)
            except ToolError as exc:
                raise CommandError("invalid_arguments", f"edited arguments refused: {exc}") from exc
            verdict = actor.policy.evaluate(call.name, arguments)
            if verdict.action == "deny":
                # An edit must not smuggle in what the policy forbids outright.
                raise CommandError(
                    "invalid_arguments", f"edited arguments refused: {verdict.rule_text}"
                )
            outs = [
                Out(ApprovalResolved(call.call_id, "edit", cmd.by, arguments), sub, extra),
                Out(ToolCallEvent(call.call_id, call.name, arguments), sub),
            ]
        case "reject":
            status = ApprovalStatus.REJECTED
            text = f"rejected by user: {cmd.feedback}" if cmd.feedback else "rejected by user"
            outs = [
                Out(ApprovalResolved(call.call_id, "reject", cmd.by, None, cmd.feedback), sub),
                Out(ToolResultEvent(call.call_id, False, summarize(text), text), sub),
            ]
        case "respond":
            status = ApprovalStatus.RESPONDED
            text = _result_text(cmd.result)
            outs = [
                Out(ApprovalResolved(call.call_id, "respond", cmd.by), sub),
                Out(ToolResultEvent(call.call_id, True, summarize(text), text), sub),
            ]
    resolution: dict[str, JSON] = {"decision": cmd.decision, "remember": cmd.remember}
    approval = await actor.close_approval(call.call_id, status, resolution, cmd.by)
    if approval is None:
        raise CommandError("already_resolved", f"approval {call.call_id!r} is not pending")
    ack = Ack.accepted(cmd.id, call.turn_id)
    committed = await actor.commit_locked(
        outs, turn_id=call.turn_id, approval=approval, command=record(actor, ack)
    )
    return duplicate_ack(committed, cmd.id) if committed.duplicate else ack


async def submit_answer(actor: SessionActor, cmd: Answer) -> Ack:
    call = _pending(actor, cmd.question_id, CallState.QUESTION, "question")
    ack = Ack.accepted(cmd.id, call.turn_id)
    outs = [
        Out(QuestionAnswered(call.call_id, cmd.text), call.subtask_id),
        Out(ToolResultEvent(call.call_id, True, summarize(cmd.text), cmd.text), call.subtask_id),
    ]
    committed = await actor.commit_locked(outs, turn_id=call.turn_id, command=record(actor, ack))
    return duplicate_ack(committed, cmd.id) if committed.duplicate else ack


async def cancel_queued(actor: SessionActor, turn_id: str, command_id: str) -> Ack | None:
    """Cancel a queued (not yet started) turn; ``None`` if no such queued turn."""
    for queued in actor.queue:
        if queued.turn_id == turn_id:
            actor.queue.remove(queued)
            ack = Ack.accepted(command_id, turn_id)
            ended = attrs.evolve(queued.row, status=TurnStatus.CANCELLED, updated_at=now())
            committed = await actor.commit_locked(
                [Out(TurnEnded("cancelled"))],
                turn_id=turn_id,
                turn=ended,
                command=record(actor, ack),
            )
            return duplicate_ack(committed, command_id) if committed.duplicate else ack
    return None


async def switch_agent(
    actor: SessionActor, modes: ModeRegistry, cmd: SwitchAgent, max_queued: int
) -> tuple[Ack, LiveTurn | None]:
    """Change the session's agent, and send ``content`` as a message if given."""
    if cmd.agent not in modes.names():
        raise CommandError(
            "unknown_agent", f"unknown agent {cmd.agent!r}; agents: {', '.join(modes.names())}"
        )
    if cmd.content is not None:
        return await enqueue_message(
            actor,
            modes,
            command_id=cmd.id,
            content=cmd.content,
            agent=cmd.agent,
            on_busy="queue",
            max_queued=max_queued,
        )
    session = actor.session
    ack = Ack.accepted(cmd.id)
    outs = []
    if cmd.agent != session.current_agent:
        outs.append(Out(AgentSwitched(session.current_agent, cmd.agent, "requested by the user")))
    updated = attrs.evolve(session, current_agent=cmd.agent, updated_at=now())
    committed = await actor.commit_locked(outs, session=updated, command=record(actor, ack))
    return (duplicate_ack(committed, cmd.id) if committed.duplicate else ack), None
