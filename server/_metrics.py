"""Server-side Prometheus metrics, registered next to the runtime's in one registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from agents import RuntimeMetrics


class ServerMetrics:
    """Connections, streams and refused requests, exported with ``GET /metrics``."""

    def __init__(self, runtime: RuntimeMetrics) -> None:
        self.runtime = runtime
        registry = runtime.registry
        self.ws_connections = Gauge(
            "agent_runtime_ws_connections", "Open WebSocket connections", registry=registry
        )
        self.sse_streams = Gauge(
            "agent_runtime_sse_streams", "Open server-sent event streams", registry=registry
        )
        self.events_sent = Counter(
            "agent_runtime_events_sent",
            "Durable events written to clients",
            ["transport"],
            registry=registry,
        )
        self.commands = Counter(
            "agent_runtime_commands",
            "Client commands by acknowledgement status",
            ["transport", "status"],
            registry=registry,
        )
        self.client_errors = Counter(
            "agent_runtime_client_errors",
            "Requests or frames refused, by error code",
            ["code"],
            registry=registry,
        )
        self.slow_consumers = Counter(
            "agent_runtime_slow_consumers",
            "Subscribers disconnected because they fell behind",
            ["transport"],
            registry=registry,
        )
        self.internal_errors = Counter(
            "agent_runtime_internal_errors",
            "Unexpected exceptions turned into 500 responses",
            registry=registry,
        )

    def render(self) -> bytes:
        return self.runtime.render()
