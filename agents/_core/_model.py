"""The model seam: what the turn runner asks of any LLM provider.

Providers (``openai``, ``scripted``) implement :class:`ModelClient`. A provider
streams :data:`ModelDelta` values; tool calls arrive already assembled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Literal, Protocol, TypeAlias

from attrs import field, frozen

from sessions import JSONObject


@frozen
class ToolSpec:
    """A tool offered to the model: name, description and JSON schema of its arguments."""

    name: str
    description: str
    parameters: JSONObject

    def to_openai(self) -> JSONObject:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@frozen
class ToolCallRequest:
    """A complete tool call from the model; ``arguments`` is the raw JSON text it sent."""

    id: str
    name: str
    arguments: str

    def to_openai(self) -> JSONObject:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


Role: TypeAlias = Literal["system", "user", "assistant", "tool"]


@frozen
class ChatMessage:
    """One message of the LLM-visible history (OpenAI chat format)."""

    role: Role
    content: str | None
    tool_calls: tuple[ToolCallRequest, ...] = ()
    tool_call_id: str | None = None

    def to_openai(self) -> JSONObject:
        out: JSONObject = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


Purpose: TypeAlias = Literal["chat", "route"]

SUBTASK_MARKER = "You are a subtask"
"""Starts a line of a delegated child's system prompt (providers may key on it)."""


@frozen
class ModelRequest:
    """One LLM call.

    ``purpose="route"`` asks for a JSON answer ``{"agent": NAME, "reason": TEXT}``
    (orchestrator routing); ``agent`` names the mode making the call (providers may
    ignore it; the scripted model uses it).
    """

    model: str
    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...] = ()
    agent: str = "coder"
    purpose: Purpose = "chat"
    temperature: float | None = None


@frozen
class TextDelta:
    text: str


@frozen
class ToolCallDelta:
    """A tool call, complete (its argument fragments already assembled)."""

    call: ToolCallRequest


@frozen
class UsageDelta:
    prompt_tokens: int
    completion_tokens: int
    model: str


@frozen
class FinishDelta:
    reason: str = field(default="stop")


ModelDelta: TypeAlias = TextDelta | ToolCallDelta | UsageDelta | FinishDelta


class ModelClient(Protocol):
    """An LLM provider.

    Cancellation: leaving the context (normally, by error or by cancellation)
    closes the underlying stream at once.
    """

    @property
    def name(self) -> str:
        """Provider name for logs and metrics (``openai``, ``scripted``)."""
        ...

    def stream(
        self, request: ModelRequest
    ) -> AbstractAsyncContextManager[AsyncIterator[ModelDelta]]:
        """Open a streaming completion; iterate the yielded iterator for deltas.

        Raises (from entering or iterating):
            ModelError: the provider failed (after any retries before the first token).
        """
        ...
