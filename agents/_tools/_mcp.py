"""The tools of MCP servers: calls the runtime carries out itself, under the approval policy.

The executor only decides *how* a call runs (which server, the default decision
from the server's trust and the tool's hints, the call itself); the turn records
it (``tool.started`` before, ``tool.result`` after) and asks for approval first
when the policy says so. The servers themselves are a service
(``_mcp_servers.py``), the one place that talks to the ``mcp`` SDK.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from typing import Protocol, assert_never

from sessions import JSONObject

from .._core._mcp import (
    INSTALL_HINT,
    McpOutcome,
    McpServerConfig,
    McpTool,
    MountedTools,
    Selector,
    selects,
    split_name,
)
from .._core._policy import Decision, mcp_default
from .._errors import McpUnavailable
from ._executor import RuntimeRun, ToolCall, TurnTools

log = logging.getLogger("agent_runtime.mcp")


def sdk_problem() -> str | None:
    """Why MCP servers cannot run here (the SDK is not installed), or ``None``.

    Looks without importing: only ``_mcp_client.py`` and ``_mcp_transports.py``
    import the SDK.
    """
    return None if importlib.util.find_spec("mcp") is not None else INSTALL_HINT


class McpServerPool(Protocol):
    """What the executor needs of the running servers (``McpServers``, or a fake)."""

    def configs(self) -> tuple[McpServerConfig, ...]: ...

    async def tools(self, server: str) -> tuple[McpTool, ...]: ...

    async def call(
        self,
        server: str,
        tool: str,
        arguments: JSONObject,
        timeout: float,  # noqa: ASYNC109 - the call's own limit, sent on as MCP's read timeout
    ) -> McpOutcome: ...


class McpTools:
    """Serves every ``mcp__<server>__<tool>`` name of a catalogue."""

    def __init__(self, servers: McpServerPool) -> None:
        self.servers = servers
        self._configs = {config.name: config for config in servers.configs()}
        # selectors -> (the servers' tool lists it was built from, the offer): the same
        # MountedTools while no server's list changed (its validators compile once).
        self._offers: dict[
            tuple[Selector, ...], tuple[tuple[tuple[McpTool, ...], ...], MountedTools]
        ] = {}

    def names(self) -> tuple[str, ...]:
        return tuple(self._configs)

    async def offered(self, selectors: Sequence[Selector]) -> MountedTools:
        """The tools a mode selecting *selectors* is offered now.

        A server that cannot start is left out (logged), so a broken server costs
        its tools, not the turn.
        """
        key = tuple(selectors)
        lists: list[tuple[McpTool, ...]] = []
        for server in dict.fromkeys(s.server for s in key):
            try:
                lists.append(await self.servers.tools(server))
            except McpUnavailable as exc:
                log.warning("MCP server %s: its tools are not offered: %s", server, exc)
        known = self._offers.get(key)
        if known is not None and _same_lists(known[0], lists):
            return known[1]
        mounted = MountedTools.of(tuple(t for tools in lists for t in tools if selects(key, t)))
        self._offers[key] = (tuple(lists), mounted)  # one entry per mode's selectors
        return mounted

    async def call(self, turn: TurnTools, call: ToolCall) -> str | None:
        server, tool = split_name(call.name) or ("", "")
        config = self._configs.get(server)
        if config is None:  # not offered (validation refuses it first); answer anyway
            return await NO_MCP_SERVERS.call(turn, call)
        run = RuntimeRun(server, await self._default(config, tool), self._execute(config, tool))
        await turn.run_here(call, run)
        return None

    async def _default(self, config: McpServerConfig, tool: str) -> Decision:
        hinted = McpTool(config.name, tool, "", {})
        if config.trusted:
            try:
                for known in await self.servers.tools(config.name):
                    if known.tool == tool:
                        hinted = known
            except McpUnavailable:
                pass  # no hints to go by: the untrusted default (ask) is the safe one
        return mcp_default(hinted, config.trusted)

    def _execute(self, config: McpServerConfig, tool: str) -> _Execute:
        return _Execute(self.servers, config, tool)


class _NoMcpServers:
    """Answers every ``mcp__*`` call with "no MCP server": for servers not configured (now).

    A call approved before a restart reaches its executor without being offered
    again, so a name whose server was removed from the configuration meanwhile
    must still get a result, not end the turn.
    """

    async def call(self, turn: TurnTools, call: ToolCall) -> str | None:
        server = (split_name(call.name) or ("", ""))[0]
        await turn.tool_result(
            call.call.call_id, False, f"no MCP server {server!r}", call.subtask_id
        )
        return None


NO_MCP_SERVERS = _NoMcpServers()


def _same_lists(old: Sequence[tuple[McpTool, ...]], new: Sequence[tuple[McpTool, ...]]) -> bool:
    """The very same tool lists (a server re-lists into a new tuple when they change)."""
    return len(old) == len(new) and all(a is b for a, b in zip(old, new, strict=True))


class _Execute:
    """One call of one MCP tool, with the server's timeout, as ``(ok, text for the model)``.

    Cancellation: cancelling the caller cancels the request; the service sends
    MCP's ``notifications/cancelled`` before the cancellation propagates.
    """

    def __init__(self, servers: McpServerPool, config: McpServerConfig, tool: str) -> None:
        self.servers, self.config, self.tool = servers, config, tool

    async def __call__(self, arguments: JSONObject) -> tuple[bool, str]:
        outcome = await self.servers.call(
            self.config.name, self.tool, arguments, self.config.timeout_s
        )
        match outcome.kind:
            case "ok":
                return True, outcome.text
            case "error":
                # The prefix tells any model that the call failed (as for IDE errors).
                return False, f"error: {outcome.text}"
            case "timeout":
                return False, (
                    f"error: MCP server {self.config.name} did not answer {self.tool} within "
                    f"{self.config.timeout_s:g} s; the call was cancelled, and whether it "
                    "took effect is unknown"
                )
            case "failed":
                return False, f"error: {outcome.text}"
            case _:
                assert_never(outcome.kind)
