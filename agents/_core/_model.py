"""The model seam: what the turn runner asks of any LLM provider.

Providers (``agents/_providers/``: ``openai``, ``scripted``) implement
:class:`ModelClient`. A provider streams :data:`ModelDelta` values; tool calls
arrive already assembled.

The types here are neutral: no provider's wire format. Each provider turns a
:class:`ModelRequest` into its own request body, and what a provider needs back
that the neutral fields cannot say (reasoning items, thinking blocks and their
signatures) it attaches to its answer as opaque *provider data*
(:class:`ProviderDataDelta`). The runner stores that data with the assistant
``message`` event, the fold puts it back on the :class:`ChatMessage`, and so the
provider gets it again on every later call, across restarts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import ClassVar, Final, Literal, Protocol, TypeAlias, assert_never

from attrs import field, frozen

from sessions import JSON, JSONObject


@frozen
class ToolSpec:
    """A tool offered to the model: name, description and JSON schema of its arguments."""

    name: str
    description: str
    parameters: JSONObject


@frozen
class ToolCallRequest:
    """A complete tool call from the model; ``arguments`` is the raw JSON text it sent."""

    id: str
    name: str
    arguments: str


@frozen
class TextPart:
    """A piece of text content."""

    type: ClassVar[str] = "text"
    text: str


ContentPart: TypeAlias = TextPart
"""One part of a message's content (a tagged union on ``type``).

Text only so far. A new kind (an image, say) is a new ``@frozen`` class added
here; every ``match`` over parts ends in ``assert_never``, so mypy then names each
provider encoder that has to learn it.
"""


def parts_text(parts: Sequence[ContentPart]) -> str | None:
    """The text of *parts*' text parts, joined; ``None`` when none is text."""
    texts: list[str] = []
    for part in parts:
        match part:
            case TextPart():
                texts.append(part.text)
            case _:
                assert_never(part)
    return "".join(texts) if texts else None


Role: TypeAlias = Literal["system", "user", "assistant", "tool"]


@frozen
class ChatMessage:
    """One message of the LLM-visible history.

    ``content`` is always the message's text, so code that only needs text never
    looks further. ``parts``, when given, are the same content with its structure
    (``content`` must then be their text: :meth:`of_parts` builds both); a
    provider that understands parts sends them instead of ``content``.

    ``provider_data`` is opaque data keyed by provider name (``{"openai": ...}``)
    that a provider attached to an answer it produced and wants back with it; a
    provider reads its own entry and ignores the others'. It is not for display.
    """

    role: Role
    content: str | None
    tool_calls: tuple[ToolCallRequest, ...] = ()
    tool_call_id: str | None = None
    parts: tuple[ContentPart, ...] = ()
    provider_data: Mapping[str, JSON] = field(factory=dict)
    # A provider's encoding of this message, keyed by provider name: history
    # messages are sent again on every later call, and encoded only once.
    wire_cache: dict[str, str] = field(factory=dict, init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # One source of truth: text-only readers and part-aware providers must agree.
        if self.parts and self.content != parts_text(self.parts):
            raise ValueError("a message with parts must have their text as its content")

    @classmethod
    def of_parts(
        cls,
        role: Role,
        parts: Sequence[ContentPart],
        *,
        tool_calls: tuple[ToolCallRequest, ...] = (),
        tool_call_id: str | None = None,
        provider_data: Mapping[str, JSON] | None = None,
    ) -> ChatMessage:
        """A message whose content is *parts* (``content`` is set to their text)."""
        return cls(
            role,
            parts_text(parts),
            tool_calls,
            tool_call_id,
            tuple(parts),
            provider_data if provider_data is not None else {},
        )

    def to_json(self) -> JSONObject:
        """The message as the REST history shows it (docs/protocol.md §8).

        That format is the OpenAI chat shape because clients know it; it is this
        runtime's own contract, not a provider's request body (the ``openai``
        provider builds its own). Parts and provider data are left out: the text
        is in ``content``, and provider data is not for display.
        """
        out: JSONObject = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in self.tool_calls
            ]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


Purpose: TypeAlias = Literal["chat", "route", "compact"]

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
    cached_tokens: int | None = None  # of prompt_tokens, served from the provider's cache
    reasoning_tokens: int | None = None  # of completion_tokens, spent on hidden reasoning


@frozen
class ProviderDataDelta:
    """Opaque data for *provider*'s entry of the answer's ``provider_data``.

    The runner stores it with the assistant message and hands it back on the
    message in every later request. A later delta for the same provider replaces
    an earlier one, so a provider sends its whole value (typically once, just
    before :class:`FinishDelta`). It is kept only with a complete answer: the
    truncated message of a cancelled or failed stream carries none, as data
    about half an answer (a signature, say) would not be valid.
    """

    provider: str
    data: JSON


#: Why an answer ended, in the provider-neutral words a provider maps its own onto
#: (OpenAI's ``length`` is ``max_tokens``). A reason it cannot map is passed as it is.
CUT_OFF_REASONS: Final = frozenset({"max_tokens", "content_filter"})


@frozen
class FinishDelta:
    """The end of an answer, and why: ``stop`` (the model finished), ``tool_calls``,
    or one of :data:`CUT_OFF_REASONS`: ``max_tokens`` (cut off at the output token
    limit) and ``content_filter`` (cut off by the provider's filter)."""

    reason: str = field(default="stop")


ModelDelta: TypeAlias = TextDelta | ToolCallDelta | UsageDelta | ProviderDataDelta | FinishDelta


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
