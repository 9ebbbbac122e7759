"""The agents branch of the error tree (root: :class:`sessions.AgentRuntimeError`)::

AgentError
├── ModelError            the LLM provider failed (``retryable`` says if a retry may help)
│   └── ModelTimeout      connect / first-token / idle timeout
├── ToolError             a tool call is invalid or forbidden (text goes back to the LLM)
├── PairingViolation      history has an unpaired tool call or result (a bug)
├── CommandError          a client command is malformed or not applicable (``code``)
├── ConfigError           a modes / policy file, or the model provider settings, is invalid
└── McpUnavailable        an MCP server cannot be started or reached (or the SDK is missing)
"""

from __future__ import annotations

from sessions import AgentRuntimeError


class AgentError(AgentRuntimeError):
    """Base of errors raised by the agents package."""


class ModelError(AgentError):
    """The model provider failed; ``retryable`` tells whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = False, code: str = "model_error") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code


class ModelTimeout(ModelError):
    """Connect, first-token or idle-between-chunks timeout."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message, retryable=retryable, code="model_timeout")


class ToolError(AgentError):
    """A tool call is invalid or forbidden; the message is sent to the LLM as the result."""


class PairingViolation(AgentError):
    """The history breaks the tool-call pairing invariant."""


class CommandError(AgentError):
    """A client command cannot be accepted; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ConfigError(AgentError):
    """A configuration file (modes, policy) or the model provider settings are invalid."""


class McpUnavailable(AgentError):
    """An MCP server cannot be started or reached now, or the ``mcp`` extra is not installed."""
