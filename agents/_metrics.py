"""Prometheus metrics of the agent runtime (one registry per server instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ._core._events import UsageEvent
from ._tools._mcp_status import McpMetrics


class RuntimeMetrics:
    """The counters the runtime updates; ``render()`` gives Prometheus text.

    A fresh :class:`CollectorRegistry` per instance keeps tests (several servers in
    one process) independent.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.mcp = McpMetrics(self.registry)  # every MCP server of this runtime counts here
        self.turns_started = Counter(
            "agent_runtime_turns_started", "Turns started", ["agent"], registry=self.registry
        )
        self.turns_ended = Counter(
            "agent_runtime_turns_ended", "Turns ended", ["reason"], registry=self.registry
        )
        self.active_turns = Gauge(
            "agent_runtime_active_turns", "Turns running now", registry=self.registry
        )
        self.active_sessions = Gauge(
            "agent_runtime_active_sessions",
            "Sessions with a turn running or queued",
            registry=self.registry,
        )
        self.events = Counter(
            "agent_runtime_events", "Durable events committed by turns", registry=self.registry
        )
        self.approval_wait = Histogram(
            "agent_runtime_approval_wait_seconds",
            "Time from approval.requested to its resolution",
            registry=self.registry,
            buckets=(0.1, 1, 5, 15, 60, 300, 600, 1800),
        )
        self.llm_first_token = Histogram(
            "agent_runtime_llm_first_token_seconds",
            "Time from LLM request to its first delta",
            ["provider"],
            registry=self.registry,
        )
        # The token and cost counters are the ledger's: each committed ``usage``,
        # the estimates of cut calls included (the provider bills those too).
        self.llm_tokens = Counter(
            "agent_runtime_llm_tokens",
            "Tokens of LLM calls (reported by the model, or estimated for a cut call)",
            ["kind"],
            registry=self.registry,
        )
        self.model_tokens = Counter(
            "agent_runtime_model_tokens",
            "Tokens by model and kind (prompt, completion, cached, reasoning), estimates included",
            ["model", "kind"],
            registry=self.registry,
        )
        self.model_cost = Counter(
            "agent_runtime_model_cost_dollars",
            "Cost of LLM calls in US dollars, by model (priced models only), estimates included",
            ["model"],
            registry=self.registry,
        )
        self.estimated_calls = Counter(
            "agent_runtime_model_estimated_calls",
            "LLM calls cut while the model answered, whose usage is the runtime's estimate",
            ["model"],
            registry=self.registry,
        )
        self.compactions = Counter(
            "agent_runtime_compactions",
            "Context compactions committed, by reason",
            ["reason"],
            registry=self.registry,
        )

    def count_usage(self, usage: UsageEvent) -> None:
        """Count a committed ``usage`` event (call it once the event is in the log)."""
        model, prompt, completion = usage.model, usage.prompt_tokens, usage.completion_tokens
        self.llm_tokens.labels("prompt").inc(prompt)
        self.llm_tokens.labels("completion").inc(completion)
        for kind, tokens in (
            ("prompt", prompt),
            ("completion", completion),
            ("cached", usage.cached_tokens),
            ("reasoning", usage.reasoning_tokens),
        ):
            if tokens:
                self.model_tokens.labels(model, kind).inc(tokens)
        if usage.cost is not None:
            self.model_cost.labels(model).inc(usage.cost)
        if usage.estimated:
            self.estimated_calls.labels(model).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
