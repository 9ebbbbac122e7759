"""A session's tool catalogue: which executor serves each tool name.

Built-in names map to their executors one by one; every ``mcp__*`` name goes to
the MCP executor, whose tools are known only once their servers run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from attrs import evolve, frozen

from .._core._mcp import MountedTools, Selector, split_name
from .._core._tools import TOOLS
from ._control import ControlTools
from ._executor import ToolExecutor
from ._ide import IdeTools
from ._mcp import NO_MCP_SERVERS, McpTools

_NOTHING = MountedTools()


@frozen
class ToolCatalogue:
    """Tool name → executor. Immutable: mounting returns a new catalogue."""

    executors: Mapping[str, ToolExecutor]
    mcp: McpTools | None = None
    #: MCP servers mounted for one session only (e.g. an ACP client's ``mcpServers``)
    session_mcp: McpTools | None = None

    @classmethod
    def builtin(cls) -> ToolCatalogue:
        """The built-in tools of SPEC §4.2: control tools, and the IDE's for the rest."""
        control, ide = ControlTools(), IdeTools()
        table: dict[str, ToolExecutor] = {
            name: control if name in control.names else ide for name in TOOLS
        }
        return cls(MappingProxyType(table))

    def mount(self, names: Iterable[str], executor: ToolExecutor) -> ToolCatalogue:
        """This catalogue with *names* served by *executor* (e.g. an in-house tool)."""
        table = dict(self.executors)
        table.update((name, executor) for name in names)
        return evolve(self, executors=MappingProxyType(table))

    def with_mcp(self, mcp: McpTools) -> ToolCatalogue:
        """This catalogue with every ``mcp__<server>__<tool>`` name served by *mcp*."""
        return evolve(self, mcp=mcp)

    def with_session_mcp(self, mcp: McpTools | None) -> ToolCatalogue:
        """This catalogue plus one session's own MCP servers (offered in every mode).

        A configured server of the same name wins: a client cannot replace it.
        """
        return self if mcp is None else evolve(self, session_mcp=mcp)

    async def offered(self, selectors: tuple[Selector, ...]) -> MountedTools:
        """The MCP tools a mode selecting *selectors* is offered now (none without MCP)."""
        offers: list[MountedTools] = []
        if self.session_mcp is not None:
            configured = set(self.mcp.names()) if self.mcp is not None else set()
            own = [Selector(name) for name in self.session_mcp.names() if name not in configured]
            offers.append(await self.session_mcp.offered(own))
        if self.mcp is not None and selectors:
            offers.append(await self.mcp.offered(selectors))
        if not offers:
            return _NOTHING
        if len(offers) == 1:
            return offers[0]  # the source's own, stable while its servers' tools are
        return offers[1].merged(offers[0])

    def executor(self, name: str) -> ToolExecutor:
        """The executor of *name* (the name was validated against the catalogue)."""
        parts = split_name(name) if name not in self.executors else None
        if parts is None:
            return self.executors[name]
        server = parts[0]
        configured = self.mcp is not None and server in self.mcp.names()
        session = self.session_mcp
        if session is not None and not configured and server in session.names():
            return session
        # An unknown server (e.g. removed from the configuration while a call of
        # its waited for approval): any MCP executor answers "no MCP server".
        return self.mcp or session or NO_MCP_SERVERS
