"""How a tool call is carried out, once it is valid and allowed: the executor seam.

A :class:`ToolExecutor` carries out the calls of the tools it serves; a
session's :class:`ToolCatalogue` says which executor serves each tool name.
The built-in executors are the control tools the turn itself handles
(``_control.py``: switch, complete, ask, delegate) and the IDE tools, a round
trip to the client (``_ide.py``); other server-side executors (MCP servers,
in-house tools) mount into a catalogue the same way. Validation (schemas,
workspace paths) and the modes' restrictions are checked before an executor
sees a call, for every executor alike.
"""

from ._catalogue import ToolCatalogue
from ._control import ControlTools
from ._executor import RuntimeRun, ToolCall, ToolExecutor, TurnTools
from ._ide import IdeTools
from ._mcp import McpServerPool, McpTools

__all__ = [
    "ControlTools",
    "IdeTools",
    "McpServerPool",
    "McpTools",
    "RuntimeRun",
    "ToolCall",
    "ToolCatalogue",
    "ToolExecutor",
    "TurnTools",
]
