"""The seam: one Protocol for executors, and what they may ask of the turn."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from attrs import frozen

from sessions import JSONObject

from .._core._policy import Decision
from .._core._state import PendingCall


@frozen
class ToolCall:
    """A validated call, permitted for the agent that made it."""

    call: PendingCall
    arguments: JSONObject
    subtask_id: str | None  # the context that made it (None: the main one)

    @property
    def name(self) -> str:
        return self.call.name


@frozen
class RuntimeRun:
    """How the runtime itself carries out one call (e.g. an MCP server's tool)."""

    server: str  # who runs it, as ``tool.started`` records it
    default: Decision  # the policy's answer when no rule matches the call
    #: the call itself: ``(ok, text for the model)``; cancellable
    execute: Callable[[JSONObject], Awaitable[tuple[bool, str]]]


class TurnTools(Protocol):
    """What an executor may do in the turn that made the call.

    Every effect is a durable write through the session's single write path;
    an executor never touches the store or the session state itself.
    """

    async def tool_result(
        self, call_id: str, ok: bool, content: str, subtask_id: str | None
    ) -> None:
        """Commit the call's result (nothing if it already has one)."""
        ...

    async def send_to_client(self, call: ToolCall) -> None:
        """Ask the IDE to run *call*, under the approval policy; the result comes later."""
        ...

    async def run_here(self, call: ToolCall, run: RuntimeRun) -> None:
        """Run *call* in the runtime, under the approval policy.

        Records ``tool.started``, runs it, records its ``tool.result``; when the
        policy asks, records the approval request instead, and the turn runs the
        call once a human approves it (with the edited arguments, if edited).
        """
        ...

    async def switch(self, to_agent: str, reason: str, subtask_id: str | None) -> str | None:
        """Switch the context's agent; a refusal text, or ``None`` when done."""
        ...

    async def ask(self, call: ToolCall, question: str, options: tuple[str, ...] | None) -> None:
        """Commit ``question.asked``; the user's answer becomes the call's result."""
        ...

    async def delegate(self, call: ToolCall, mode: str, message: str) -> None:
        """Run a subtask in its own context; its outcome becomes the call's result."""
        ...


class ToolExecutor(Protocol):
    """Carries out the calls of the tools it serves."""

    async def call(self, turn: TurnTools, call: ToolCall) -> str | None:
        """Carry out *call*: commit its result now, or start what will.

        Returns the ``attempt_completion`` result when the call completed its
        (sub)task, else ``None``. A failure is a result with ``ok=False``, never
        an exception the turn did not ask for.
        """
        ...
