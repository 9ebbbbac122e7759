"""Client commands (SPEC §3.1) applied to a live session.

:func:`apply_command` checks a command against the committed state and commits
its effect together with the command's idempotency record in one atomic write,
all under the session's lock, so two commands can never both resolve the same
call. A refusal is committed too (as a rejected ack under the command's id), so
a retried command id always gets its first answer back, decided by the store.

Answers to waiting calls (tool results, approvals, answers) are in
``_call_answers.py``, the idempotency record every command commits in
``_command_acks.py``; this module dispatches every command and holds those that
queue or steer turns.
"""

from __future__ import annotations

from typing import assert_never

import attrs

from sessions import JSONObject, Turn, TurnStatus, new_id, now

# Re-exported (``X as X``): these were defined here before they moved out.
from ._call_answers import submit_answer as submit_answer
from ._call_answers import submit_approval as submit_approval
from ._call_answers import submit_tool_result as submit_tool_result
from ._command_acks import duplicate_ack as duplicate_ack
from ._command_acks import record as record
from ._config import RuntimeConfig
from ._core._commands import (
    Ack,
    Answer,
    Cancel,
    Command,
    Compact,
    SendMessage,
    SubmitApproval,
    SubmitToolResult,
    SwitchAgent,
    SwitchModel,
)
from ._core._events import AgentSwitched, ModelSwitched, TurnEnded, UserMessage
from ._core._modes import ModeRegistry
from ._errors import CommandError
from ._live_turn import LiveTurn, Out
from ._session import LiveSession

TITLE_LIMIT = 120


async def apply_command(
    live: LiveSession, cmd: Command, modes: ModeRegistry, config: RuntimeConfig
) -> tuple[Ack, LiveTurn | None]:
    """Apply *cmd* to *live*; the ack, and the turn it queued (the caller starts it).

    Never raises :class:`CommandError`: a refusal is an ack with status
    ``rejected``. A ``cancel`` returns once the cancelled turn is closed.
    """
    if isinstance(cmd, Cancel):
        return await _cancel(live, cmd), None
    async with live.locked():
        try:
            return await _apply_locked(live, cmd, modes, config)
        except CommandError as exc:
            return await _refuse(live, Ack.rejected(cmd.id, exc)), None


async def _apply_locked(
    live: LiveSession,
    cmd: (
        SendMessage
        | SubmitToolResult
        | SubmitApproval
        | Answer
        | SwitchAgent
        | Compact
        | SwitchModel
    ),
    modes: ModeRegistry,
    config: RuntimeConfig,
) -> tuple[Ack, LiveTurn | None]:
    match cmd:
        case SendMessage():
            return await enqueue_message(
                live,
                modes,
                command_id=cmd.id,
                content=cmd.content,
                agent=cmd.agent,
                on_busy=cmd.on_busy,
                max_queued=config.max_queued,
            )
        case SubmitToolResult():
            return await submit_tool_result(live, cmd), None
        case SubmitApproval():
            return await submit_approval(live, modes, cmd), None
        case Answer():
            return await submit_answer(live, cmd), None
        case SwitchAgent():
            return await switch_agent(live, modes, cmd, config.max_queued)
        case Compact():
            return await enqueue_compaction(live, cmd, config.max_queued)
        case SwitchModel():
            return await switch_model(live, cmd), None
        case _:
            assert_never(cmd)


async def refuse(live: LiveSession, cmd_id: str, error: CommandError) -> Ack:
    """Record and return the refusal of command *cmd_id* (the first ack if repeated)."""
    async with live.locked():
        return await _refuse(live, Ack.rejected(cmd_id, error))


async def _refuse(live: LiveSession, ack: Ack) -> Ack:
    committed = await live.commit_locked(command=record(live, ack))
    return duplicate_ack(committed, ack.id) if committed.duplicate else ack


async def _cancel(live: LiveSession, cmd: Cancel) -> Ack:
    async with live.locked():
        running = live.running
        if cmd.turn_id is not None and (running is None or running.turn_id != cmd.turn_id):
            ack = await cancel_queued(live, cmd.turn_id, cmd.id)
            if ack is not None:
                return ack
            running = None
        if running is None:
            if cmd.turn_id is None or live.running is None:
                error = CommandError("no_turn", "no running turn to cancel")
            else:
                error = CommandError(
                    "no_turn",
                    f"turn {cmd.turn_id!r} is neither running nor queued"
                    f" (running: {live.running.turn_id!r})",
                )
            return await _refuse(live, Ack.rejected(cmd.id, error))
        ack = Ack.accepted(cmd.id, running.turn_id)
        committed = await live.commit_locked(command=record(live, ack))
        if committed.duplicate:
            return duplicate_ack(committed, cmd.id)
        running.stop("cancelled")
    # The ack follows the effect: the turn's closing events are committed.
    await running.done.wait()
    return ack


async def enqueue_message(
    live: LiveSession,
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
    if live.busy and on_busy == "reject":
        running = live.running.turn_id if live.running else "a queued turn"
        # The refusal is this id's answer for good (the id is the idempotency key).
        raise CommandError(
            "busy",
            f"the session is busy ({running}); send it again with a new id, or with on_busy=queue",
        )
    if len(live.queue) >= max_queued:
        raise CommandError(
            "queue_full",
            f"at most {max_queued} messages may wait per session; send it again later"
            " with a new id",
        )
    session = live.session
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
    committed = await live.commit_locked(
        outs, session=updated, turn=turn, command=record(live, ack)
    )
    if committed.duplicate:
        return duplicate_ack(committed, command_id), None
    queued = LiveTurn(turn, live.state.user_message_seqs.get(message_id))
    if on_busy == "interrupt":
        live.queue.appendleft(queued)
        if live.running is not None:
            live.running.stop("interrupted")
    else:
        live.queue.append(queued)
    return ack, queued


COMPACT_KEY = "compact"  # in a turn row's state: a compaction turn, with its instructions


async def enqueue_compaction(
    live: LiveSession, cmd: Compact, max_queued: int
) -> tuple[Ack, LiveTurn | None]:
    """Queue a turn whose one step compacts the history (``compact`` command)."""
    if len(live.queue) >= max_queued:
        raise CommandError(
            "queue_full",
            f"at most {max_queued} turns may wait per session; send it again later with a new id",
        )
    session = live.session
    state: JSONObject = {COMPACT_KEY: True}
    if cmd.instructions is not None:
        state["instructions"] = cmd.instructions
    turn = Turn(
        new_id("turn"), session.id, session.current_agent, TurnStatus.QUEUED, now(), now(), state
    )
    ack = Ack.accepted(cmd.id, turn.id)
    committed = await live.commit_locked([], turn=turn, command=record(live, ack))
    if committed.duplicate:
        return duplicate_ack(committed, cmd.id), None
    queued = LiveTurn(turn, None)
    live.queue.append(queued)
    return ack, queued


async def cancel_queued(live: LiveSession, turn_id: str, command_id: str) -> Ack | None:
    """Cancel a queued (not yet started) turn; ``None`` if no such queued turn."""
    for queued in live.queue:
        if queued.turn_id == turn_id:
            live.queue.remove(queued)
            ack = Ack.accepted(command_id, turn_id)
            ended = attrs.evolve(queued.row, status=TurnStatus.CANCELLED, updated_at=now())
            committed = await live.commit_locked(
                [Out(TurnEnded("cancelled"))],
                turn_id=turn_id,
                turn=ended,
                command=record(live, ack),
            )
            return duplicate_ack(committed, command_id) if committed.duplicate else ack
    return None


async def switch_agent(
    live: LiveSession, modes: ModeRegistry, cmd: SwitchAgent, max_queued: int
) -> tuple[Ack, LiveTurn | None]:
    """Change the session's agent, and send ``content`` as a message if given."""
    if cmd.agent not in modes.names():
        raise CommandError(
            "unknown_agent", f"unknown agent {cmd.agent!r}; agents: {', '.join(modes.names())}"
        )
    if cmd.content is not None:
        return await enqueue_message(
            live,
            modes,
            command_id=cmd.id,
            content=cmd.content,
            agent=cmd.agent,
            on_busy="queue",
            max_queued=max_queued,
        )
    session = live.session
    ack = Ack.accepted(cmd.id)
    outs = []
    if cmd.agent != session.current_agent:
        outs.append(Out(AgentSwitched(session.current_agent, cmd.agent, "requested by the user")))
    updated = attrs.evolve(session, current_agent=cmd.agent, updated_at=now())
    committed = await live.commit_locked(outs, session=updated, command=record(live, ack))
    return (duplicate_ack(committed, cmd.id) if committed.duplicate else ack), None


async def switch_model(live: LiveSession, cmd: SwitchModel) -> Ack:
    """Change the session's model (``None``: back to the mode's or the server's).

    Takes effect at the session's next LLM call, also in a running turn: the
    event belongs to that turn then (``turn_id``), so its log says where it switched.
    """
    ack = Ack.accepted(cmd.id)
    current = live.state.model
    outs = [] if cmd.model == current else [Out(ModelSwitched(current, cmd.model))]
    running = live.running.turn_id if live.running is not None else None
    committed = await live.commit_locked(outs, turn_id=running, command=record(live, ack))
    return duplicate_ack(committed, cmd.id) if committed.duplicate else ack
