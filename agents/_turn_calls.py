"""The tool calls of one turn: validate, decide, record, run or send, and wait (SPEC §4.2-4.4).

:class:`TurnCalls` is what executors see of the turn (``agents._tools.TurnTools``):
each call of an assistant message is validated (the built-in schemas, or the MCP
server's), checked against the agent's restrictions, then given to its executor.
IDE calls go to the client as ``tool.call``; calls the runtime runs itself (MCP
tools) are recorded as ``tool.started`` and their result as ``tool.result``;
either asks a human first when the policy says so. Then the turn waits for every
result, each state with its own deadline.
"""

from __future__ import annotations

from typing import Protocol

import attrs
import trio

from sessions import Approval, ApprovalStatus, JSONObject, Turn, now

from ._config import RuntimeConfig
from ._core._events import (
    ApprovalRequested,
    ApprovalResolved,
    QuestionAsked,
    ToolCallEvent,
    ToolResultEvent,
    ToolStarted,
    summarize,
)
from ._core._mcp import MountedTools, is_mcp_name
from ._core._modes import ModeRegistry
from ._core._policy import Decision
from ._core._state import QUESTION_EXPIRED, TOOL_EXPIRED, CallState, PendingCall
from ._core._tools import TOOLS, validate_call
from ._errors import ToolError
from ._live_turn import LiveTurn, Out
from ._session import LiveSession
from ._tools import RuntimeRun, ToolCall, ToolCatalogue


class Contexts(Protocol):
    """What the calls need of the agent loop: switching and delegating contexts."""

    async def switch(self, to_agent: str, reason: str, subtask_id: str | None) -> str | None: ...

    async def subtask(
        self, call: PendingCall, mode: str, message: str, parent: str | None
    ) -> None: ...


@attrs.define(eq=False)
class TurnCalls:
    """The calls of one turn, across its contexts (the main one and its subtasks)."""

    live: LiveSession
    live_turn: LiveTurn
    modes: ModeRegistry
    config: RuntimeConfig
    tools: ToolCatalogue
    contexts: Contexts
    agents: dict[str | None, str]  # context -> its agent (the runner's, shared)
    # Trio time at which the turn stops waiting for each open call's answer.
    deadlines: dict[str, float] = attrs.field(factory=dict)
    # The MCP tools each context was last offered: what its calls are checked against.
    mounted: dict[str | None, MountedTools] = attrs.field(factory=dict)

    @property
    def turn(self) -> Turn:
        return self.live_turn.row

    async def offered(self, agent: str, subtask_id: str | None) -> MountedTools:
        """The MCP tools *agent* is offered in this context now (remembered for its calls)."""
        mounted = await self.tools.offered(self.modes.get(agent).mcp)
        self.mounted[subtask_id] = mounted
        self.live.mounted = self.live.mounted.merged(mounted)
        return mounted

    async def handle(self, subtask_id: str | None, calls: list[PendingCall]) -> str | None:
        """Send, approve, run or refuse every call; wait for all results.

        Returns the ``attempt_completion`` result if the model called it.
        """
        completion: str | None = None
        permitted: list[ToolCall] = []
        for call in calls:
            if call.state is not CallState.REQUESTED:
                continue  # sent before a restart: just wait for it below
            try:
                arguments = await self._validate(call, subtask_id)
            except ToolError as exc:
                await self.tool_result(call.call_id, False, _refusal(call, exc), subtask_id)
                continue
            permitted.append(ToolCall(call, arguments, subtask_id))
        # Round trips to the IDE first: the IDE works on them while the turn runs
        # the others (a delegated subtask can take long).
        permitted.sort(key=lambda c: c.name not in TOOLS or TOOLS[c.name].side != "ide")
        for permitted_call in permitted:
            result = await self.tools.executor(permitted_call.name).call(self, permitted_call)
            if result is not None:
                completion = result
        await self.wait(calls)
        return completion

    async def _validate(self, call: PendingCall, subtask_id: str | None) -> JSONObject:
        agent = self.agents[subtask_id]
        if not is_mcp_name(call.name):
            arguments = validate_call(call.name, call.arguments)
            self.modes.check_call(agent, call.name, arguments)
            return arguments
        mounted = self.mounted.get(subtask_id)
        if mounted is None:  # resumed after a restart: no step offered tools yet
            mounted = await self.offered(agent, subtask_id)
        # Only what the mode selects is offered, so this is also the mode's check.
        return mounted.validate(call.name, call.arguments)

    # -- what executors may do (agents._tools.TurnTools) ---------------------------

    async def send_to_client(self, call: ToolCall) -> None:
        decision = self.live.policy.evaluate(call.name, call.arguments)
        if await self._decided(call, decision):
            out = Out(ToolCallEvent(call.call.call_id, call.name, call.arguments), call.subtask_id)
            await self.live.commit([out], turn_id=self.turn.id)

    async def run_here(self, call: ToolCall, run: RuntimeRun) -> None:
        pending = call.call
        if pending.state is CallState.REQUESTED:
            decision = self.live.policy.evaluate(call.name, call.arguments, run.default)
            if not await self._decided(call, decision):
                return  # refused, or asked: the turn runs it once it is approved
        elif pending.state is not CallState.APPROVED:
            return
        started = ToolStarted(pending.call_id, call.name, call.arguments, run.server)
        await self.live.commit([Out(started, call.subtask_id)], turn_id=self.turn.id)
        # Cancellation: a cancelled turn closes with the call resolved as cancelled.
        ok, text = await run.execute(call.arguments)
        await self.tool_result(pending.call_id, ok, text, call.subtask_id)

    async def _decided(self, call: ToolCall, decision: Decision) -> bool:
        """Apply the policy's *decision*: ``True`` if the call may go ahead now.

        ``deny`` records the refusal as its result; ``ask`` records the approval
        request (the decision comes as a command, and the turn waits for it).
        """
        pending, subtask_id = call.call, call.subtask_id
        if decision.action == "deny":
            text = f"denied by policy: {decision.rule_text}"
            await self.tool_result(pending.call_id, False, text, subtask_id)
            return False
        if decision.action == "allow":
            return True
        expires = now() + self.config.approval_timeout
        self.deadlines[pending.call_id] = trio.current_time() + self.config.approval_timeout
        approval = Approval(
            self.live.session.id,
            pending.call_id,
            self.turn.id,
            pending.name,
            call.arguments,
            decision.rule_text,
            now(),
            expires,
        )
        requested = ApprovalRequested(
            pending.call_id, pending.name, call.arguments, decision.rule_text, expires
        )
        await self.live.commit(
            [Out(requested, subtask_id)], turn_id=self.turn.id, approval=approval
        )
        return False

    async def ask(self, call: ToolCall, question: str, options: tuple[str, ...] | None) -> None:
        out = Out(QuestionAsked(call.call.call_id, question, options), call.subtask_id)
        await self.live.commit([out], turn_id=self.turn.id)

    async def switch(self, to_agent: str, reason: str, subtask_id: str | None) -> str | None:
        return await self.contexts.switch(to_agent, reason, subtask_id)

    async def delegate(self, call: ToolCall, mode: str, message: str) -> None:
        await self.contexts.subtask(call.call, mode, message, call.subtask_id)

    async def tool_result(
        self, call_id: str, ok: bool, content: str, subtask_id: str | None
    ) -> None:
        """Commit a result for *call_id* unless one is already there."""
        async with self.live.locked():
            if call_id not in self.live.state.pending:
                return
            out = Out(ToolResultEvent(call_id, ok, summarize(content), content), subtask_id)
            await self.live.commit_locked([out], turn_id=self.turn.id)

    # -- waiting -------------------------------------------------------------------

    async def wait(self, calls: list[PendingCall]) -> None:
        """Wait until every call has a result, resolving the ones that time out.

        Each state has its own deadline: an approval expires at its ``expires_at``;
        once approved, the IDE gets ``tool_timeout`` to answer. The turn's own
        :attr:`~agents._live_turn.LiveTurn.wake` says when an answer was committed.
        An approved server-side call is run here, by the turn, as soon as it is seen.
        """
        pending = self.live.state.pending
        for call in calls:
            seen: CallState | None = None
            while call.call_id in pending:
                if call.state is CallState.APPROVED:
                    approved = ToolCall(call, call.arguments_object(), call.subtask_id)
                    await self.tools.executor(call.name).call(self, approved)
                    continue
                if call.state is not seen:
                    seen = call.state
                    self._set_deadline(call)
                with trio.move_on_at(self.deadlines[call.call_id]):
                    await self.live_turn.wake.wait()
                    continue
                await self._expire(call)
            self.deadlines.pop(call.call_id, None)

    def _set_deadline(self, call: PendingCall) -> None:
        if call.state is CallState.APPROVAL:
            if call.call_id not in self.deadlines:  # resumed after a restart: the stored expiry
                expires_at = call.approval.expires_at if call.approval else now()
                self.deadlines[call.call_id] = trio.current_time() + max(0.0, expires_at - now())
        elif call.state is CallState.QUESTION:
            self.deadlines[call.call_id] = trio.current_time() + self.config.question_timeout
        else:
            self.deadlines[call.call_id] = trio.current_time() + self.config.tool_timeout

    async def _expire(self, call: PendingCall) -> None:
        """A waited-for answer did not come in time: resolve the call as failed."""
        sub = call.subtask_id
        if call.state is CallState.APPROVAL:
            async with self.live.locked():
                # Re-checked under the lock: a decision committed while this turn
                # waited for the lock wins (the call then waits for what it decided).
                if call.call_id not in self.live.state.pending or call.state is not (
                    CallState.APPROVAL
                ):
                    return
                approval = self.live.close_approval(
                    call.call_id, ApprovalStatus.EXPIRED, {"decision": "reject"}, "timeout"
                )
                if approval is None:
                    return
                text = "rejected: the approval request expired"
                outs = [
                    Out(ApprovalResolved(call.call_id, "reject", "timeout", None, "expired"), sub),
                    Out(ToolResultEvent(call.call_id, False, text, text), sub),
                ]
                await self.live.commit_locked(outs, turn_id=self.turn.id, approval=approval)
        elif call.state is CallState.QUESTION:
            await self.tool_result(call.call_id, False, QUESTION_EXPIRED, sub)
        else:
            await self.tool_result(call.call_id, False, TOOL_EXPIRED, sub)


def _refusal(call: PendingCall, error: ToolError) -> str:
    """What the model is told of a call whose arguments were refused.

    An answer cut at the output token limit is the likely cause when its call's
    arguments do not validate (a large file written in one call): the schema's
    complaint alone ("'content' is a required property") would not say so.
    """
    if call.cut_off != "max_tokens":
        return str(error)
    return (
        f"{error}. Your answer was cut off at the output token limit (max_tokens), so this "
        "call's arguments are likely incomplete: send it again with less in it (write a "
        "large file in parts)"
    )
