"""The model seam: the neutral messages, requests and stream deltas every provider speaks.

A provider implements :class:`ModelClient` (``agents.ScriptedModel`` and the
OpenAI-compatible client are the built-in ones).
"""

from ._core._model import (
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
from ._openai import OpenAIClient

__all__ = [
    "ChatMessage",
    "FinishDelta",
    "ModelClient",
    "ModelDelta",
    "ModelRequest",
    "OpenAIClient",
    "TextDelta",
    "ToolCallDelta",
    "ToolCallRequest",
    "ToolSpec",
    "UsageDelta",
]
