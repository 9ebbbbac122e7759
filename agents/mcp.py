"""MCP servers as a tool source: configuration, the running servers, and their executor.

``parse_servers`` reads ``[mcp.servers.NAME]`` tables; ``open_mcp_servers`` runs
them as a service (each server a task of its nursery, started lazily or at
startup, restarted with backoff); ``McpTools`` mounts their tools into a
:class:`~agents._tools.ToolCatalogue` (``ToolCatalogue.builtin().with_mcp(...)``),
passed to ``open_supervisor(tools=...)``. Only ``agents/_tools/_mcp_client.py``
and ``agents/_tools/_mcp_transports.py`` import the ``mcp`` SDK (the optional
``mcp`` extra), lazily.
"""

from ._core._mcp import (
    HttpTransport,
    McpOutcome,
    McpServerConfig,
    McpTool,
    StdioTransport,
    ToolHints,
    hint_json,
    parse_servers,
    tool_name,
)
from ._errors import McpUnavailable
from ._tools import McpServerPool, McpTools, ToolCatalogue
from ._tools._mcp import sdk_problem
from ._tools._mcp_servers import McpServers, open_mcp_servers
from ._tools._mcp_status import McpServerStatus

__all__ = [
    "HttpTransport",
    "McpOutcome",
    "McpServerConfig",
    "McpServerPool",
    "McpServerStatus",
    "McpServers",
    "McpTool",
    "McpTools",
    "McpUnavailable",
    "StdioTransport",
    "ToolCatalogue",
    "ToolHints",
    "hint_json",
    "open_mcp_servers",
    "parse_servers",
    "sdk_problem",
    "tool_name",
]
