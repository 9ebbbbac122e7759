"""A session's tool catalogue: which executor serves each tool name."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from attrs import frozen

from .._core._tools import TOOLS
from ._control import ControlTools
from ._executor import ToolExecutor
from ._ide import IdeTools


@frozen
class ToolCatalogue:
    """Tool name → executor. Immutable: mounting returns a new catalogue."""

    executors: Mapping[str, ToolExecutor]

    @classmethod
    def builtin(cls) -> ToolCatalogue:
        """The built-in tools of SPEC §4.2: control tools, and the IDE's for the rest."""
        control, ide = ControlTools(), IdeTools()
        table: dict[str, ToolExecutor] = {
            name: control if name in control.names else ide for name in TOOLS
        }
        return cls(MappingProxyType(table))

    def mount(self, names: Iterable[str], executor: ToolExecutor) -> ToolCatalogue:
        """This catalogue with *names* served by *executor* (e.g. an MCP server's tools)."""
        table = dict(self.executors)
        table.update((name, executor) for name in names)
        return ToolCatalogue(MappingProxyType(table))

    def executor(self, name: str) -> ToolExecutor:
        """The executor of *name* (the name was validated against the catalogue)."""
        return self.executors[name]
