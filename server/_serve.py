"""``serve()``: the store, the turn supervisor and hypercorn, started and stopped in order.

Start-up nests store (outermost) → supervisor → hypercorn serving the quart-trio
app, and reports the bound URL once the socket listens. Shutdown runs inside-out,
each step with a deadline:

1. stop accepting connections (hypercorn's shutdown trigger), close idle
   keep-alive ones (``_tcp.py``) and refuse new work;
2. exit the supervisor: running turns get ``shutdown_grace`` to finish, then end
   as ``interrupted``; turns waiting for the IDE or a human are suspended. Open
   streams stay connected meanwhile, so clients see each ``turn.ended``;
3. streams deliver their committed tail and close (WS 1001, SSE end); hypercorn
   returns once every connection is done (``graceful_timeout`` caps it);
4. the store commits what is queued and closes.

The supervisor runs in a sibling task of hypercorn (not around it) precisely so
that step 2 can happen while step 3's connections are still open.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Final

import trio
from hypercorn.config import Config as HypercornConfig

from agents import (
    ConfigError,
    ModelClient,
    ModeRegistry,
    Policy,
    RuntimeConfig,
    RuntimeMetrics,
    ScriptedModel,
    Supervisor,
    load_modes,
    load_policy,
    open_openai_client,
    open_supervisor,
)
from sessions import SessionStore, open_memory_store, open_sqlite_store, single_error

from ._app import create_app
from ._auth import Authenticator, ensure_tokens
from ._config import ServeConfig
from ._errors import ConfigurationError
from ._limits import KeyedLimiter
from ._logging import AccessLogger
from ._metrics import ServerMetrics
from ._startup import bind_error, missing_key_warning
from ._state import ServerState
from ._stream import FLUSH_TIMEOUT
from ._tcp import serve_app

logger = logging.getLogger("agent_runtime.server")

# Slack on top of the configured grace for cancel clean-up, flushes and closes.
_SHUTDOWN_SLACK: Final = 5.0


@asynccontextmanager
async def open_configured_store(config: ServeConfig) -> AsyncIterator[SessionStore]:
    """The store *config* asks for: in-memory for ``:memory:``, else SQLite.

    Cancellation: exiting drains queued appends within the store's own deadline.
    """
    if config.in_memory:
        async with open_memory_store() as store:
            yield store
    else:
        async with open_sqlite_store(config.db, durability=config.durability) as store:
            yield store


@asynccontextmanager
async def open_model(config: ServeConfig) -> AsyncIterator[ModelClient]:
    """The LLM provider *config* asks for.

    Cancellation: leaving closes the provider's connections at once.
    """
    if config.llm == "scripted":
        yield ScriptedModel(pace=config.scripted_pace)
        return
    if (warning := missing_key_warning(config)) is not None:
        logger.warning("%s", warning)
    async with open_openai_client(
        config.llm_url,
        config.model_name,
        config.api_key,
        connect_timeout=config.llm_connect_timeout,
        first_token_timeout=config.llm_first_token_timeout,
        idle_timeout=config.llm_idle_timeout,
        max_retries=config.llm_retries,
        max_connections=config.llm_max_connections,
        max_keepalive=config.llm_max_keepalive,
    ) as client:
        yield client


def load_agents(config: ServeConfig) -> tuple[ModeRegistry, Policy]:
    """Modes and approval policy from their files (or the built-ins).

    Raises:
        ConfigurationError: a file is missing or invalid (the message says which).
    """
    try:
        return load_modes(config.modes), load_policy(config.policy)
    except ConfigError as error:
        raise ConfigurationError(str(error)) from None


def runtime_config(config: ServeConfig) -> RuntimeConfig:
    return RuntimeConfig(
        model=config.model_name,
        max_steps=config.max_steps,
        approval_timeout=config.approval_timeout,
        shutdown_grace=config.shutdown_grace,
        session_idle_ttl=config.session_idle_ttl,
        max_idle_sessions=config.max_idle_sessions,
    )


def hypercorn_config(config: ServeConfig) -> HypercornConfig:
    hyper = HypercornConfig()
    host = f"[{config.host}]" if ":" in config.host else config.host
    hyper.bind = [f"{host}:{config.port}"]
    hyper.logger_class = AccessLogger
    hyper.accesslog = None
    hyper.errorlog = logging.getLogger("hypercorn.error")
    # Connections are closed by the app once turns have ended; this only caps it.
    hyper.graceful_timeout = config.shutdown_grace + FLUSH_TIMEOUT + _SHUTDOWN_SLACK
    # Oversized frames below this cap reach the app, which answers with a readable
    # ``too_large`` error frame and keeps the connection; beyond it hypercorn closes
    # with 1009 without buffering more.
    hyper.websocket_max_message_size = max(16 * 1024 * 1024, 2 * config.limits.max_message_bytes)
    hyper.websocket_ping_interval = None  # the app sends its own heartbeats
    hyper.include_server_header = False
    return hyper


async def _run_supervisor(
    store: SessionStore,
    model: ModelClient,
    config: ServeConfig,
    metrics: RuntimeMetrics,
    stop: trio.Event,
    stopped: trio.Event,
    *,
    task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED,
) -> None:
    modes, policy = load_agents(config)
    try:
        async with open_supervisor(
            store,
            model,
            modes=modes,
            policy=policy,
            config=runtime_config(config),
            metrics=metrics,
        ) as supervisor:
            task_status.started(supervisor)
            await stop.wait()
    finally:
        # Every turn.ended of the shutdown is committed by now.
        stopped.set()


async def _run_hypercorn(
    state: ServerState,
    stop_accepting: trio.Event,
    done: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        await serve_app(
            create_app(state),
            hypercorn_config(state.config),
            send_timeout=state.config.send_timeout,
            on_stalled=state.metrics.stalled_connections.inc,
            shutdown_trigger=stop_accepting.wait,
            task_status=task_status,
        )
    finally:
        done.set()


async def serve(
    config: ServeConfig,
    *,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve *config* until *shutdown* is set (the CLI sets it on SIGINT/SIGTERM).

    Reports the bound URL (``http://127.0.0.1:PORT``) through *task_status* once
    the socket listens. With no tokens configured on a loopback address, a random
    token for principal ``local`` is generated (use :func:`~server.ensure_tokens`
    first to know it).

    Raises:
        ConfigurationError: invalid configuration, or no tokens off loopback.
        StoreError: the database cannot be opened (e.g. in use by another server).

    Cancellation: cancelling ``serve`` stops everything at once, but turns still
    commit their closing events and the store still drains (both shielded and
    time-limited).
    """
    config, generated = ensure_tokens(config)
    if generated is not None:
        logger.warning("no tokens configured; generated one for principal 'local'")
    load_agents(config)  # fail before opening anything
    shutdown = shutdown if shutdown is not None else trio.Event()
    runtime_metrics = RuntimeMetrics()
    async with (
        open_configured_store(config) as store,
        open_model(config) as model,
        trio.open_nursery() as nursery,
    ):
        stop_supervisor, supervisor_stopped = trio.Event(), trio.Event()
        supervisor: Supervisor = await nursery.start(
            _run_supervisor,
            store,
            model,
            config,
            runtime_metrics,
            stop_supervisor,
            supervisor_stopped,
        )
        state = ServerState(
            config=config,
            store=store,
            supervisor=supervisor,
            auth=Authenticator(config.tokens),
            metrics=ServerMetrics(runtime_metrics),
            http_limiter=KeyedLimiter(config.limits.commands_per_second),
        )
        state.metrics.watch_store(store)
        state.metrics.watch_sessions(supervisor)
        stop_accepting, hypercorn_done = trio.Event(), trio.Event()
        try:
            binds: list[str] = await nursery.start(
                partial(_run_hypercorn, state, stop_accepting, hypercorn_done)
            )
        except (OSError, BaseExceptionGroup) as raised:
            # Before hypercorn reports started, an OSError (in its nurseries' groups)
            # can only come from binding the socket.
            if isinstance(error := single_error(raised), OSError):
                raise bind_error(config.host, config.port, error) from None
            raise
        url = binds[0]
        # With text logs a person reads the CLI's banner, which says this on stdout;
        # JSON logs are read by machines, which get it as one structured record.
        logger.log(
            logging.INFO if config.log_format == "json" else logging.DEBUG,
            "listening on %s",
            url,
            extra={"url": url, "db": config.db, "llm": config.llm, "model": config.model_name},
        )
        task_status.started(url)

        await shutdown.wait()
        deadline = trio.current_time() + config.shutdown_grace + FLUSH_TIMEOUT
        nursery.cancel_scope.deadline = deadline + 2 * _SHUTDOWN_SLACK
        state.draining.set()
        stop_accepting.set()
        stop_supervisor.set()
        with trio.move_on_at(deadline + _SHUTDOWN_SLACK):
            await supervisor_stopped.wait()
        state.closing.set()
        await hypercorn_done.wait()
    logger.info("server stopped")
