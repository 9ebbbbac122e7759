"""The runtime's parts as a :class:`ServeConfig` asks for them: store, model, agents, tools.

``serve()`` and the ACP adapter's embedded runtime assemble the same store, model,
modes, policy and tool catalogue from the same configuration; this module is that
assembly, without HTTP. It is kept apart from ``_serve.py`` so that the commands
that run no HTTP server (``acp``, ``sessions``, ``migrate``) do not import quart
and hypercorn: an editor waits for the ACP adapter's start-up before its first
answer (B15 in docs/benchmarks.md).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from agents import (
    ConfigError,
    ModelClient,
    ModeRegistry,
    Policy,
    RuntimeConfig,
    load_modes,
    load_policy,
)
from agents.mcp import McpServers, McpTools, ToolCatalogue, sdk_problem
from agents.model import ProviderSettings, open_provider
from sessions import (
    SessionStore,
    is_postgres_dsn,
    open_memory_store,
    open_postgres_store,
    open_sqlite_store,
)

from ._config import ServeConfig
from ._errors import ConfigurationError
from ._startup import missing_key_warning

logger = logging.getLogger("agent_runtime.server")


@asynccontextmanager
async def open_configured_store(config: ServeConfig) -> AsyncIterator[SessionStore]:
    """The store *config* asks for: in-memory for ``:memory:``, PostgreSQL for a
    ``postgresql://`` URL, else the SQLite file.

    Cancellation: exiting drains queued appends within the store's own deadline.
    """
    if config.in_memory:
        async with open_memory_store() as store:
            yield store
    elif is_postgres_dsn(config.db):
        async with open_postgres_store(config.db, lease_ttl=config.lease_ttl) as store:
            yield store
    else:
        async with open_sqlite_store(config.db, durability=config.durability) as store:
            yield store


@asynccontextmanager
async def open_model(config: ServeConfig) -> AsyncIterator[ModelClient]:
    """The LLM provider *config* asks for, from the provider registry.

    Raises (on entering):
        ConfigurationError: an unknown provider, or settings it refuses.

    Cancellation: leaving closes the provider's connections at once.
    """
    if (warning := missing_key_warning(config)) is not None:
        logger.warning("%s", warning)
    settings = ProviderSettings(
        name=config.llm,
        url=config.llm_url,
        model=config.model_name,
        api_key=config.api_key,
        connect_timeout=config.llm_connect_timeout,
        first_token_timeout=config.llm_first_token_timeout,
        idle_timeout=config.llm_idle_timeout,
        retries=config.llm_retries,
        max_connections=config.llm_max_connections,
        max_keepalive=config.llm_max_keepalive,
        pace=config.scripted_pace,
    )
    async with AsyncExitStack() as stack:
        try:
            client = await stack.enter_async_context(open_provider(settings))
        except ConfigError as error:
            raise ConfigurationError(str(error)) from None
        yield client


def load_agents(config: ServeConfig) -> tuple[ModeRegistry, Policy]:
    """Modes and approval policy from their files (or the built-ins).

    Raises:
        ConfigurationError: a file is missing or invalid (the message says which).
    """
    try:
        modes, policy = load_modes(config.modes), load_policy(config.policy)
    except ConfigError as error:
        raise ConfigurationError(str(error)) from None
    servers = {server.name for server in config.mcp_servers}
    for mode in modes.modes.values():
        for selector in mode.mcp:
            if selector.server not in servers:
                known = ", ".join(sorted(servers)) or "none configured"
                raise ConfigurationError(
                    f"agent {mode.name}: mcp entry {str(selector)!r} names no MCP server "
                    f"(add [mcp.servers.{selector.server}] to the config file; servers: {known})"
                )
    if config.mcp_servers and (problem := sdk_problem()) is not None:
        raise ConfigurationError(problem)
    return modes, policy


def tool_catalogue(mcp: McpServers) -> ToolCatalogue:
    """The built-in tools, and the configured MCP servers' (if any)."""
    builtin = ToolCatalogue.builtin()
    return builtin.with_mcp(McpTools(mcp)) if mcp.names() else builtin


def runtime_config(config: ServeConfig) -> RuntimeConfig:
    return RuntimeConfig(
        model=config.model_name,
        max_steps=config.max_steps,
        max_subtask_depth=config.max_subtask_depth,
        approval_timeout=config.approval_timeout,
        shutdown_grace=config.shutdown_grace,
        session_idle_ttl=config.session_idle_ttl,
        max_idle_sessions=config.max_idle_sessions,
        models=config.models,
        compact_at=config.compact_at,
        keep_user_messages=config.keep_user_messages,
        compaction_model=config.compaction_model,
        tool_result_share=config.tool_result_share,
    )
