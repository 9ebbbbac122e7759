"""What every request handler needs, built once by ``serve()``.

Its own module so that the route modules and the app that registers them do not
import each other.
"""

from __future__ import annotations

import attrs
import trio

from agents import Supervisor
from agents.mcp import McpServers
from sessions import SessionStore

from ._auth import Authenticator
from ._config import ServeConfig
from ._limits import KeyedLimiter
from ._metrics import ServerMetrics


@attrs.define(eq=False)
class ServerState:
    """What every handler needs; built once by ``serve()``.

    ``draining`` is set when shutdown begins (streams keep delivering until their
    session's turn ends); ``closing`` when open streams must finish now.
    """

    config: ServeConfig
    store: SessionStore
    supervisor: Supervisor
    auth: Authenticator
    metrics: ServerMetrics
    http_limiter: KeyedLimiter
    mcp: McpServers | None = None  # the configured MCP servers (GET /v1/mcp)
    draining: trio.Event = attrs.field(factory=trio.Event)
    closing: trio.Event = attrs.field(factory=trio.Event)
