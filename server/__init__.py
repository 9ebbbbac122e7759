"""agent-runtime's network server and CLI.

``serve()`` runs the store, the turn supervisor and the HTTP/WebSocket server;
``main()`` is the ``agent-runtime`` command (the program's only ``trio.run``).
"""

from ._auth import Authenticator, ensure_tokens, is_loopback
from ._cli import main
from ._config import Limits, ServeConfig, load_config
from ._errors import ApiError, ConfigurationError, ServerError
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
