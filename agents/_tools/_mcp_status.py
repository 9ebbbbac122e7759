"""What the MCP servers service reports: each server's status, and its Prometheus metrics."""

from __future__ import annotations

from typing import Literal, TypeAlias

from attrs import frozen
from prometheus_client import CollectorRegistry, Counter, Histogram

from .._core._mcp import McpTool, Startup

ServerState: TypeAlias = Literal["idle", "starting", "ready", "backoff", "stopped"]


@frozen
class McpServerStatus:
    """One server as ``GET /v1/mcp`` shows it."""

    name: str
    transport: Literal["stdio", "http"]
    state: ServerState
    trusted: bool
    tools: tuple[McpTool, ...]
    restarts: int
    last_error: str | None
    pid: int | None
    startup: Startup = "lazy"
    #: times the tool list was re-read after ``notifications/tools/list_changed``
    tool_refreshes: int = 0


class McpMetrics:
    """The MCP counters, in *registry* (a private one when ``None``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.calls = Counter(
            "agent_runtime_mcp_calls",
            "MCP tool calls by outcome (ok, error, failed, timeout, cancelled)",
            ["server", "tool", "outcome"],
            registry=registry,
        )
        self.call_seconds = Histogram(
            "agent_runtime_mcp_call_seconds",
            "Duration of MCP tool calls, waiting for a start or a slot included",
            ["server", "tool"],
            registry=registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.restarts = Counter(
            "agent_runtime_mcp_restarts",
            "MCP server (re)starts after the first",
            ["server"],
            registry=registry,
        )
