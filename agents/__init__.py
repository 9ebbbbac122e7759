"""Agents: modes, tools, approval policy, model providers and the turn runner."""

from ._errors import (
    AgentError,
    CommandError,
    ConfigError,
    ModelError,
    ModelTimeout,
    PairingViolation,
    ToolError,
)
from ._model import (
    ChatMessage,
    FinishDelta,
    ModelClient,
    ModelDelta,
    ModelRequest,
    TextDelta,
    ToolCallDelta,
    ToolCallRequest,
    ToolSpec,
    UsageDelta,
)

__all__ = [
    "AgentError",
    "ChatMessage",
    "CommandError",
    "ConfigError",
    "FinishDelta",
    "ModelClient",
    "ModelDelta",
    "ModelError",
    "ModelRequest",
    "ModelTimeout",
    "PairingViolation",
    "TextDelta",
    "ToolCallDelta",
    "ToolCallRequest",
    "ToolError",
    "ToolSpec",
    "UsageDelta",
]
