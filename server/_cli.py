"""The ``agent-runtime`` command: serve, sessions, migrate, chat, acp and schema.

This module holds the program's only ``trio.run``. Exit status: 0 success; 1 a
failure after the command started (e.g. ``sessions show`` of an unknown id); 2 the
command could not start (bad configuration, a database in use, an address in use),
reported in one line on stderr; ``--debug`` adds the traceback. The verbs and
their flags are defined in ``_cli_parser.py``; this module runs them.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial

import attrs
import trio

from agents._core._schema import protocol_schema_text
from sessions import JSON, AgentRuntimeError, Append, SessionStore, dumps, now, single_error

from ._auth import LOCAL_PRINCIPAL, ensure_tokens
from ._cli_parser import ACP_TOKEN_ENV, command_parser, config_from_args
from ._config import ServeConfig
from ._errors import ConfigurationError
from ._logging import configure_logging
from ._migrate import check_arguments, migrate
from ._runtime import open_configured_store
from ._startup import PROGRAM, banner, describe_failure

logger = logging.getLogger("agent_runtime.server")


@attrs.define
class _Progress:
    """Whether the command got past start-up: decides exit status 2 or 1 on failure."""

    started: bool = False


def _say(line: str) -> None:
    print(line, flush=True)


async def _serve_main(config: ServeConfig, token: str | None, progress: _Progress) -> None:
    """Serve until SIGINT/SIGTERM (graceful); a second signal stops at once.

    The handlers are installed before the server starts, so a signal sent as soon
    as the URL is announced already shuts down gracefully.
    """
    shutdown = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_follow_signals, signals, shutdown, nursery.cancel_scope)
            url: str = await nursery.start(_serve_then_stop, config, shutdown, nursery.cancel_scope)
            progress.started = True
            for line in banner(config, url, token):
                _say(line)


async def _serve_then_stop(
    config: ServeConfig,
    shutdown: trio.Event,
    done: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    # Imported here: only ``serve`` needs the HTTP stack (quart, hypercorn), and the
    # other verbs, ``acp`` above all, start faster without it.
    from ._serve import serve

    await serve(config, shutdown=shutdown, task_status=task_status)
    done.cancel()  # stops following signals


async def _follow_signals(
    signals: AsyncIterator[int], shutdown: trio.Event, force: trio.CancelScope
) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        if not shutdown.is_set():
            logger.info("received %s; shutting down gracefully", name)
            shutdown.set()
        else:
            logger.warning("received %s again; stopping now", name)
            force.cancel()


def _run_acp(args: argparse.Namespace, progress: _Progress) -> int:
    connect: tuple[str, str] | None = None
    if args.connect is not None:
        if args.db is not None:
            print(f"{PROGRAM} acp: --connect and --db exclude each other", file=sys.stderr)
            return 2
        token = args.token or os.environ.get(ACP_TOKEN_ENV)
        if not token:
            print(
                f"{PROGRAM} acp: --connect needs a token: pass --token or set {ACP_TOKEN_ENV}",
                file=sys.stderr,
            )
            return 2
        connect = (args.connect, token)
    elif args.token is not None:
        print(f"{PROGRAM} acp: --token is only for --connect", file=sys.stderr)
        return 2
    config = config_from_args(args)
    configure_logging(config.log_format, logging.DEBUG if args.debug else logging.INFO)
    tune_gc()  # embedded, the whole runtime runs here, as under serve
    if connect is None:
        trio.run(_acp_main, config, progress, None)
        return 0
    from .acp import LinkError  # the adapter is for acp only (see _acp_then_stop)

    try:
        trio.run(_acp_main, config, progress, connect)
    except BaseException as raised:
        error = single_error(raised)
        if not isinstance(error, LinkError):
            raise
        print(f"{PROGRAM} acp: {args.connect}: {error.message} ({error.code})", file=sys.stderr)
        return 1 if progress.started else 2
    return 0


async def _acp_main(
    config: ServeConfig, progress: _Progress, connect: tuple[str, str] | None
) -> None:
    """Serve ACP on stdio until end of input, or SIGINT/SIGTERM (like end of input);
    a second signal stops at once."""
    shutdown = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_follow_signals, signals, shutdown, nursery.cancel_scope)
            await nursery.start(_acp_then_stop, config, connect, shutdown, nursery.cancel_scope)
            progress.started = True


async def _acp_then_stop(
    config: ServeConfig,
    connect: tuple[str, str] | None,
    shutdown: trio.Event,
    done: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    # Imported here: the adapter (and the terminal client's tools it reuses) is for acp only.
    from .acp import run_acp

    await run_acp(config, connect=connect, shutdown=shutdown, task_status=task_status)
    done.cancel()  # stops following signals


def _run_serve(args: argparse.Namespace, progress: _Progress) -> int:
    config = config_from_args(args)
    configure_logging(config.log_format, logging.DEBUG if args.debug else logging.INFO)
    config, token = ensure_tokens(config)
    tune_gc()
    trio.run(_serve_main, config, token, progress)
    return 0


# Young collections only after this many more container objects were allocated
# than freed (CPython's default: 700). Almost all of the server's garbage is freed
# by reference counting; with the default the cyclic collector ran hundreds of
# times a second under load. Measured (B2 openai, single runs in one hour):
# default 6.5 ms of CPU per turn, start-up frozen 5.8, frozen and 10,000 5.5-5.6
# (50,000: 5.4-5.5, but B7's RSS after 20,000 sessions 76.8 -> 84.5 MiB; with
# 10,000 it is 79.7). Cyclic garbage still goes after at most this many allocations.
GC_THRESHOLDS = (10_000, 10, 10)


def tune_gc() -> None:
    """Set :data:`GC_THRESHOLDS` and freeze what start-up created (modules,
    classes, configuration live as long as the process: full collections need
    not walk them again)."""
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()


async def _with_store(
    config: ServeConfig, action: Callable[[SessionStore], Awaitable[int]], progress: _Progress
) -> int:
    async with open_configured_store(config) as store:
        progress.started = True
        return await action(store)


def _run_sessions(args: argparse.Namespace, progress: _Progress) -> int:
    config = config_from_args(args)
    if args.debug:
        configure_logging(config.log_format, logging.DEBUG)
    if args.action == "list":
        owners = args.owner or sorted({*config.tokens.values(), LOCAL_PRINCIPAL})
        return trio.run(_with_store, config, lambda s: _list(s, owners, args.limit), progress)
    if args.action == "show":
        return trio.run(
            _with_store, config, lambda s: _show(s, args.session_id, args.events), progress
        )
    return trio.run(_with_store, config, lambda s: _delete(s, args.session_id), progress)


def _run_migrate(args: argparse.Namespace, progress: _Progress) -> int:
    source = check_arguments(args.source, args.target)
    if args.debug:
        configure_logging("text", logging.DEBUG)

    def say(line: str) -> None:
        print(f"{PROGRAM} migrate: {line}", file=sys.stderr, flush=True)

    def started() -> None:
        progress.started = True

    return trio.run(partial(migrate, source, args.target, say=say, started=started))


def _report_failure(raised: BaseException, progress: _Progress, *, debug: bool) -> int:
    """Print *raised* as one line and return the exit status; re-raise a bug."""
    error = single_error(raised)
    if isinstance(error, KeyboardInterrupt):
        return 130
    message = describe_failure(error)
    if message is None:
        raise raised
    print(f"{PROGRAM}: {message}", file=sys.stderr)
    if debug:
        traceback.print_exception(raised)
    elif not isinstance(error, AgentRuntimeError):
        print(f"{PROGRAM}: (--debug shows where it happened)", file=sys.stderr)
    return 1 if progress.started else 2


async def _list(store: SessionStore, owners: Sequence[str], limit: int) -> int:
    sessions = [s for owner in owners for s in await store.list_sessions(owner, limit=limit)]
    sessions.sort(key=lambda s: (s.created_at, s.id), reverse=True)
    for session in sessions[:limit]:
        title = session.title or "(untitled)"
        _say(f"{session.id}  {session.owner}  {session.current_agent}  {title}")
    if not sessions:
        _say("no sessions")
    return 0


async def _show(store: SessionStore, session_id: str, with_events: bool) -> int:
    session = await store.get_session(session_id)
    if session is None:
        print(f"agent-runtime: no session {session_id!r}", file=sys.stderr)
        return 1
    events = await store.read_events(session_id)
    pending = await store.pending_approvals(session_id)
    summary: dict[str, JSON] = {
        **session.to_json(),
        "events": len(events),
        "last_seq": events[-1].seq if events else 0,
        "pending_approvals": [a.call_id for a in pending],
    }
    _say(dumps(summary))
    if with_events:
        for event in events:
            _say(event.wire())
    return 0


async def _delete(store: SessionStore, session_id: str) -> int:
    session = await store.get_session(session_id)
    if session is None:
        print(f"agent-runtime: no session {session_id!r}", file=sys.stderr)
        return 1
    deleted = attrs.evolve(session, deleted=True, updated_at=now())
    await store.append(Append(session_id, session=deleted))
    _say(f"deleted {session_id}")
    return 0


def _run_chat(argv: list[str]) -> int:
    # Imported here, not at the top: ``serve`` and ``sessions`` need none of the client
    # (nor trio-websocket, which only the client uses).
    from .chat import run_chat

    return trio.run(run_chat, argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``agent-runtime`` command line; returns the exit status."""
    try:
        return _run_command(list(sys.argv[1:] if argv is None else argv))
    except BaseException as raised:
        # Sockets fail as trio's and httpx's errors, so a bare one is our stdout.
        if not isinstance(single_error(raised), BrokenPipeError):
            raise
        return _output_gone()


def _output_gone() -> int:
    """The exit status when whoever read our output left (``chat ... | head``).

    Quiet, with the status of a tool that SIGPIPE ended; stdout is pointed at
    ``/dev/null`` so that Python's own flush at exit does not fail again.
    """
    with contextlib.suppress(OSError, ValueError):  # ValueError: no real stdout
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


def _run_command(argv: list[str]) -> int:
    try:
        if argv[:1] == ["chat"]:
            return _run_chat(argv[1:])
        args = command_parser().parse_args(argv)
        if args.command == "schema":
            sys.stdout.write(protocol_schema_text())
            return 0
        progress = _Progress()
        try:
            if args.command == "serve":
                return _run_serve(args, progress)
            if args.command == "migrate":
                return _run_migrate(args, progress)
            if args.command == "acp":
                return _run_acp(args, progress)
            return _run_sessions(args, progress)
        except BaseException as raised:  # a bug is re-raised by _report_failure
            return _report_failure(raised, progress, debug=args.debug)
    except ConfigurationError as error:
        print(f"agent-runtime: configuration error: {error}", file=sys.stderr)
        return 2
    except AgentRuntimeError as error:
        print(f"agent-runtime: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
