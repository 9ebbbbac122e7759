"""``agent-runtime acp``: an Agent Client Protocol (ACP v1) agent on stdio.

Editors that speak ACP (Zed, and any client of the protocol: JSON-RPC 2.0,
newline-delimited, on the agent's stdin/stdout) drive the runtime's sessions
through it: ``session/new`` and ``session/load`` open a runtime session,
``session/prompt`` sends a user message and streams its turn back as
``session/update`` notifications, approvals become ``session/request_permission``,
and IDE tool calls run through the editor's ``fs/*`` and ``terminal/*`` methods.
The mapping, the capabilities and what degrades are in ``docs/acp.md``.

The adapter reaches the runtime through one seam, :class:`RuntimeLink`; the
default is :func:`open_embedded_link` (store and supervisor in this process).

Modules: ``_main`` (the CLI's entry: stdio and the embedded runtime), ``_agent``
(one connection: reader, writer, dispatcher, methods), ``_bridge`` (one session:
updates, prompts, open work), ``_work`` (the handlers of open work: tools,
permissions, questions), ``_tools`` (IDE tools through the client or here),
``_mapping`` (events → updates, stop reasons, tool kinds), ``_capabilities``
(``initialize``, prompt content, permission options), ``_connection`` (lines,
the writer, our requests), ``_jsonrpc`` (JSON-RPC 2.0, sans I/O), ``_link`` (the
runtime seam), ``_embedded`` (its in-process implementation), ``_book`` (each
session's cwd).
"""

from ._agent import serve_acp
from ._book import SessionBook, book_path
from ._embedded import EmbeddedLink, open_embedded_link
from ._link import AgentInfo, LinkError, RuntimeLink, SessionInfo, SessionPage
from ._main import run_acp

__all__ = [
    "AgentInfo",
    "EmbeddedLink",
    "LinkError",
    "RuntimeLink",
    "SessionBook",
    "SessionInfo",
    "SessionPage",
    "book_path",
    "open_embedded_link",
    "run_acp",
    "serve_acp",
]
