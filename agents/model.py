"""The model seam: the neutral messages, requests and stream deltas every provider speaks.

A provider implements :class:`ModelClient` (``agents.ScriptedModel`` and the
OpenAI-compatible client are the built-in ones). :data:`PROVIDERS` names every
provider; :func:`open_provider` opens one from :class:`ProviderSettings`.
"""

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
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


def __getattr__(name: str) -> object:
    # The OpenAI client is imported on first use, as the provider registry does (see
    # ``_providers/__init__.py``): it brings httpx, which most start-ups never use.
    if name == "OpenAIClient":
        from ._providers._openai import OpenAIClient

        globals()["OpenAIClient"] = OpenAIClient
        return OpenAIClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
