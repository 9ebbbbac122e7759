"""Agents: the turn supervisor and what it runs on (modes, tools, policy, model providers).

Depends on :mod:`sessions` only; never imports the web stack. Typed events,
commands and the model seam are in :mod:`agents.events`, :mod:`agents.commands`
and :mod:`agents.model`; test aids in :mod:`agents.testing`.
"""

from typing import TYPE_CHECKING

from ._config import RuntimeConfig
from ._core._commands import Ack
from ._core._events import AgentEvent, decode_event, encode_event
from ._core._model import ModelClient
from ._core._modes import ModeRegistry, builtin_modes, load_modes
from ._core._policy import Policy, load_policy
from ._core._tools import TOOLS, validate_arguments
from ._errors import (
    AgentError,
    CommandError,
    ConfigError,
    ModelError,
    ModelTimeout,
    PairingViolation,
    ToolError,
)
from ._metrics import RuntimeMetrics
from ._providers._scripted import ScriptedModel
from ._supervisor import Supervisor, open_supervisor

if TYPE_CHECKING:
    from ._providers._openai import open_openai_client

__all__ = [
    "TOOLS",
    "Ack",
    "AgentError",
    "AgentEvent",
    "CommandError",
    "ConfigError",
    "ModeRegistry",
    "ModelClient",
    "ModelError",
    "ModelTimeout",
    "PairingViolation",
    "Policy",
    "RuntimeConfig",
    "RuntimeMetrics",
    "ScriptedModel",
    "Supervisor",
    "ToolError",
    "builtin_modes",
    "decode_event",
    "encode_event",
    "load_modes",
    "load_policy",
    "open_openai_client",
    "open_supervisor",
    "validate_arguments",
]


def __getattr__(name: str) -> object:
    # The OpenAI client is imported on first use, as the provider registry does (see
    # ``_providers/__init__.py``): it brings httpx, which most start-ups never use.
    if name == "open_openai_client":
        from ._providers._openai import open_openai_client

        globals()["open_openai_client"] = open_openai_client
        return open_openai_client
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
