"""``serve()``: the store, the turn supervisor and hypercorn, started and stopped in order.

Start-up nests store (outermost) → model → MCP servers → supervisor → hypercorn
serving the quart-trio app (innermost, SPEC §1.1), and reports the bound URL once
the socket listens. The MCP servers outlive the supervisor: turns winding down
may still be running a server's tool. Shutdown runs inside-out under one deadline:

1. refuse new work (``state.draining``), stop accepting connections and close
   idle keep-alive ones (``_tcp.py``);
2. wind the supervisor down while hypercorn still serves: running turns get
   ``shutdown_grace`` to finish, then end as ``interrupted``; turns waiting for
   the IDE or a human are suspended. Open streams stay connected meanwhile, so
   clients see each ``turn.ended``;
3. ``state.closing``: streams deliver their committed tail and close (WS 1001,
   SSE end); hypercorn returns once every connection is done
   (``graceful_timeout`` caps it);
4. the supervisor's context exits (nothing left to end), the MCP servers stop
   (each within its shutdown deadline), then the store commits what is queued
   and closes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Final

import attrs
import trio
from hypercorn.config import Config as HypercornConfig

from agents import RuntimeMetrics, open_supervisor
from agents.mcp import open_mcp_servers
from sessions import single_error

from ._app import create_app
from ._auth import Authenticator, ensure_tokens
from ._config import ServeConfig
from ._limits import KeyedLimiter
from ._logging import AccessLogger
from ._metrics import ServerMetrics
from ._runtime import (
    load_agents,
    open_configured_store,
    open_model,
    runtime_config,
    tool_catalogue,
)
from ._startup import bind_error
from ._state import ServerState
from ._stream import FLUSH_TIMEOUT
from ._tcp import serve_app

logger = logging.getLogger("agent_runtime.server")

# Slack on top of the configured grace for cancel clean-up, flushes and closes.
_SHUTDOWN_SLACK: Final = 5.0


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


@attrs.define(eq=False)
class HttpServer:
    """hypercorn serving the app, as :func:`open_http_server` yields it."""

    urls: list[str]
    _stop_accepting: trio.Event

    def stop_accepting(self) -> None:
        """Refuse new connections and close idle keep-alive ones; open streams go on."""
        self._stop_accepting.set()


@asynccontextmanager
async def open_http_server(state: ServerState) -> AsyncIterator[HttpServer]:
    """hypercorn on *state*'s binds, listening when this yields.

    Leaving stops accepting and waits until every connection is done: streams
    end once ``state.closing`` is set, and ``graceful_timeout`` caps the wait.

    Raises:
        ConfigurationError: the address cannot be bound (a sentence with the fix).
    """
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        try:
            urls: list[str] = await nursery.start(
                partial(
                    serve_app,
                    create_app(state),
                    hypercorn_config(state.config),
                    send_timeout=state.config.send_timeout,
                    on_stalled=state.metrics.stalled_connections.inc,
                    shutdown_trigger=stop.wait,
                )
            )
        except (OSError, BaseExceptionGroup) as raised:
            # Before hypercorn reports started, an OSError (in its nurseries' groups)
            # can only come from binding the socket.
            if isinstance(error := single_error(raised), OSError):
                config = state.config
                raise bind_error(config.host, config.port, error) from None
            raise
        try:
            yield HttpServer(urls, stop)
        finally:
            stop.set()


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
    modes, policy = load_agents(config)  # fails before anything is opened
    shutdown = shutdown if shutdown is not None else trio.Event()
    runtime_metrics = RuntimeMetrics()
    # One bound for the whole shutdown, set when it begins; every step below
    # stays inside it, and only a bug can reach it.
    limit = trio.CancelScope()
    with limit:
        async with (
            open_configured_store(config) as store,
            open_model(config) as model,
            open_mcp_servers(config.mcp_servers, runtime_metrics.mcp) as mcp,
            open_supervisor(
                store,
                model,
                modes=modes,
                policy=policy,
                config=runtime_config(config),
                metrics=runtime_metrics,
                tools=tool_catalogue(mcp),
            ) as supervisor,
        ):
            state = ServerState(
                config=config,
                store=store,
                supervisor=supervisor,
                mcp=mcp,
                auth=Authenticator(config.tokens),
                metrics=ServerMetrics(runtime_metrics),
                http_limiter=KeyedLimiter(config.limits.commands_per_second),
            )
            state.metrics.watch_store(store)
            state.metrics.watch_sessions(supervisor)
            async with open_http_server(state) as http:
                url = http.urls[0]
                # With text logs a person reads the CLI's banner, which says this on
                # stdout; JSON logs are read by machines, which get one record.
                logger.log(
                    logging.INFO if config.log_format == "json" else logging.DEBUG,
                    "listening on %s",
                    url,
                    extra={
                        "url": url,
                        "db": config.db,
                        "llm": config.llm,
                        "model": config.model_name,
                    },
                )
                task_status.started(url)
                await shutdown.wait()

                # Inside-out, while clients are still connected: refuse new work,
                # let turns end (clients see each turn.ended), then close streams.
                grace = config.shutdown_grace + FLUSH_TIMEOUT
                limit.deadline = trio.current_time() + grace + 2 * _SHUTDOWN_SLACK
                state.draining.set()
                http.stop_accepting()
                with trio.move_on_after(config.shutdown_grace + _SHUTDOWN_SLACK):
                    await supervisor.wind_down()
                state.closing.set()
            # hypercorn has returned: every connection is done. Leaving the
            # supervisor finds nothing left to end; the store drains last.
    logger.info("server stopped")
