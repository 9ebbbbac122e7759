"""The model seam: the neutral messages, requests and stream deltas every provider speaks.

A provider implements :class:`ModelClient` (``agents.ScriptedModel`` and the
OpenAI-compatible client are the built-in ones). :data:`PROVIDERS` names every
provider; :func:`open_provider` opens one from :class:`ProviderSettings`.
"""

from ._core._model import (
    ChatMessage,
    ContentPart,
    FinishDelta,
    ModelClient,
    ModelDelta,
    ModelRequest,
    ProviderDataDelta,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallRequest,
    ToolSpec,
    UsageDelta,
)
from ._providers import PROVIDERS, ProviderFactory, ProviderSettings, open_provider
from ._providers._openai import OpenAIClient

__all__ = [
    "PROVIDERS",
    "ChatMessage",
    "ContentPart",
    "FinishDelta",
    "ModelClient",
    "ModelDelta",
    "ModelRequest",
    "OpenAIClient",
    "ProviderDataDelta",
    "ProviderFactory",
    "ProviderSettings",
    "TextDelta",
    "TextPart",
    "ToolCallDelta",
    "ToolCallRequest",
    "ToolSpec",
    "UsageDelta",
    "open_provider",
]
