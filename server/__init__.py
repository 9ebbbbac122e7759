"""agent-runtime's network server and CLI.

``serve()`` runs the store, the turn supervisor and the HTTP/WebSocket server;
``main()`` is the ``agent-runtime`` command (the program's only ``trio.run``).
"""

from typing import TYPE_CHECKING

from ._auth import Authenticator, ensure_tokens, is_loopback
from ._cli import main
from ._config import Limits, ServeConfig, load_config
from ._errors import ApiError, ConfigurationError, ServerError

if TYPE_CHECKING:
    from ._serve import serve

__all__ = [
    "ApiError",
    "Authenticator",
    "ConfigurationError",
    "Limits",
    "ServeConfig",
    "ServerError",
    "ensure_tokens",
    "is_loopback",
    "load_config",
    "main",
    "serve",
]


def __getattr__(name: str) -> object:
    # ``serve`` is imported on first use: it brings the HTTP stack (quart, hypercorn),
    # which the CLI's other verbs (``acp`` above all: an editor waits for its start-up)
    # do not need.
    if name == "serve":
        from ._serve import serve

        globals()["serve"] = serve
        return serve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
