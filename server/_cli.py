"""The ``agent-runtime`` command: serve, sessions, migrate, chat, acp and schema.

This module holds the program's only ``trio.run``. Exit status: 0 success; 1 a
failure after the command started (e.g. ``sessions show`` of an unknown id); 2 the
command could not start (bad configuration, a database in use, an address in use),
reported in one line on stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path

import attrs
import trio

from agents._core._schema import protocol_schema_text
from agents.model import PROVIDERS
from sessions import JSON, AgentRuntimeError, Append, SessionStore, dumps, now, single_error

from ._auth import LOCAL_PRINCIPAL, ensure_tokens
from ._config import MEMORY_DB, ServeConfig, load_config
from ._errors import ConfigurationError
from ._logging import configure_logging
from ._migrate import check_arguments, migrate
from ._serve import open_configured_store, serve
from ._startup import PROGRAM, banner, describe_failure, version

# `acp --connect`'s token, when --token is not given: the same variable `chat` reads.
_ACP_TOKEN_ENV = "AGENT_RUNTIME_TOKEN"

logger = logging.getLogger("agent_runtime.server")


@attrs.define
class _Progress:
    """Whether the command got past start-up: decides exit status 2 or 1 on failure."""

    started: bool = False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="Run AI coding agents for IDE clients."
    )
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve_cmd = commands.add_parser("serve", help="run the server")
    serve_cmd.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="port to bind, 0 for any (default 8765)")
    _store_flags(serve_cmd)
    serve_cmd.add_argument("--llm", choices=sorted(PROVIDERS), help="model provider")
    serve_cmd.add_argument("--llm-url", help="base URL of an OpenAI-compatible API")
    serve_cmd.add_argument("--model", help="model name to request")
    serve_cmd.add_argument("--modes", type=Path, help="TOML file overriding the agent modes")
    serve_cmd.add_argument("--policy", type=Path, help="TOML file with approval rules")
    serve_cmd.add_argument("--pace", type=float, help="scripted model: seconds between chunks")
    serve_cmd.add_argument("--log-format", choices=["text", "json"], help="log line format")
    serve_cmd.add_argument(
        "--cors-origins",
        metavar="ORIGINS",
        help="comma-separated origins allowed to call the API from a browser (default: none)",
    )
    # Strings, validated by load_config, so an error names the flag like any other source.
    llm = serve_cmd.add_argument_group("openai provider timeouts (seconds) and retries")
    llm.add_argument("--llm-connect-timeout", metavar="S", help="to connect (default 10)")
    llm.add_argument(
        "--llm-first-token-timeout", metavar="S", help="request → first token (default 60)"
    )
    llm.add_argument("--llm-idle-timeout", metavar="S", help="between two chunks (default 60)")
    llm.add_argument(
        "--llm-retries", metavar="N", help="retries before the first token (default 3)"
    )
    llm.add_argument(
        "--llm-max-connections", metavar="N", help="concurrent upstream connections (default 100)"
    )
    llm.add_argument(
        "--llm-max-keepalive", metavar="N", help="idle upstream connections kept (default 20)"
    )
    _debug_flag(serve_cmd)

    sessions_cmd = commands.add_parser("sessions", help="inspect the session database")
    _store_flags(sessions_cmd)
    _debug_flag(sessions_cmd)
    actions = sessions_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    list_cmd = actions.add_parser("list", help="list sessions, newest first")
    list_cmd.add_argument(
        "--owner", action="append", help="principal (repeatable; default: every configured one)"
    )
    list_cmd.add_argument("--limit", type=int, default=50)
    show_cmd = actions.add_parser("show", help="show one session")
    show_cmd.add_argument("session_id")
    show_cmd.add_argument("--events", action="store_true", help="also print its event log")
    delete_cmd = actions.add_parser("delete", help="delete one session")
    delete_cmd.add_argument("session_id")
    for action in (list_cmd, show_cmd, delete_cmd):
        # Also after the action (``sessions list --db PATH``, as the README writes it).
        _store_flags(action, default=argparse.SUPPRESS)
        _debug_flag(action, default=argparse.SUPPRESS)

    migrate_cmd = commands.add_parser(
        "migrate",
        help="copy an SQLite database into PostgreSQL (stop its server first)",
        description="Copy every live session of an SQLite database, with its whole event log,"
        " turns, approvals and command records, into a PostgreSQL database. Stop the server"
        " using the SQLite file first (the command takes its lock). Sessions already in"
        " PostgreSQL are skipped, so it can be run again. See docs/deployment.md.",
    )
    migrate_cmd.add_argument(
        "--from", dest="source", required=True, metavar="PATH", help="the SQLite database file"
    )
    migrate_cmd.add_argument(
        "--to", dest="target", required=True, metavar="URL", help="postgresql://USER@HOST/DB"
    )
    _debug_flag(migrate_cmd)

    commands.add_parser(
        "schema",
        help="print the wire protocol as JSON Schema (docs/protocol.schema.json)",
        description="Print the JSON Schema (draft 2020-12) of every command, event, ack and"
        " ephemeral frame of docs/protocol.md, generated from the runtime's own codec.",
    )
    # Listed for --help only: main() hands "chat ..." to the client's own parser.
    commands.add_parser("chat", help="terminal IDE client (agent-runtime chat --help)")
    _acp_parser(commands)
    return parser


def _acp_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    acp_cmd = commands.add_parser(
        "acp",
        help="Agent Client Protocol agent on stdin/stdout, for editors (docs/acp.md)",
        description="Speak the Agent Client Protocol (JSON-RPC 2.0, one message per line) on"
        " stdin/stdout, running the editor's sessions in this process on --db (the same"
        " database as serve by default). Only protocol messages go to stdout; logs go to"
        " stderr. End of input or SIGTERM stops it. See docs/acp.md.",
    )
    _store_flags(acp_cmd)
    acp_cmd.add_argument("--llm", choices=sorted(PROVIDERS), help="model provider")
    for flag, text in (
        ("--llm-url", "base URL of an OpenAI-compatible API"),
        ("--model", "model name to request"),
    ):
        acp_cmd.add_argument(flag, help=text)
    acp_cmd.add_argument("--modes", type=Path, help="TOML file overriding the agent modes")
    acp_cmd.add_argument("--policy", type=Path, help="TOML file with approval rules")
    acp_cmd.add_argument("--pace", type=float, help="scripted model: seconds between chunks")
    acp_cmd.add_argument("--log-format", choices=["text", "json"], help="stderr log line format")
    llm = acp_cmd.add_argument_group("openai provider timeouts (seconds) and retries")
    for flag in (
        "--llm-connect-timeout",
        "--llm-first-token-timeout",
        "--llm-idle-timeout",
        "--llm-retries",
        "--llm-max-connections",
        "--llm-max-keepalive",
    ):
        llm.add_argument(flag, metavar="N", help="as for serve")
    acp_cmd.add_argument(
        "--connect",
        metavar="URL",
        help="drive the running server at URL instead of opening a database (not with --db)",
    )
    acp_cmd.add_argument("--token", help=f"bearer token for --connect (default ${_ACP_TOKEN_ENV})")
    _debug_flag(acp_cmd)


def _store_flags(parser: argparse.ArgumentParser, default: object = None) -> None:
    # SUPPRESS on the inner parser: its default would overwrite the outer one's value.
    parser.add_argument("--config", type=Path, default=default, help="TOML configuration file")
    parser.add_argument(
        "--db",
        default=default,
        help=f"SQLite database path, {MEMORY_DB}, or postgresql://USER@HOST/DB",
    )
    parser.add_argument(
        "--durability", choices=["normal", "full"], default=default, help="SQLite durability"
    )


def _debug_flag(parser: argparse.ArgumentParser, default: object = False) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="debug logging, and a traceback with start-up errors",
    )


_FLAG_SETTINGS = (
    "host",
    "cors_origins",
    "port",
    "db",
    "durability",
    "llm",
    "llm_url",
    "model",
    "modes",
    "policy",
    "log_format",
    "llm_connect_timeout",
    "llm_first_token_timeout",
    "llm_idle_timeout",
    "llm_retries",
    "llm_max_connections",
    "llm_max_keepalive",
)


def _config(args: argparse.Namespace) -> ServeConfig:
    flags = {name: getattr(args, name, None) for name in _FLAG_SETTINGS}
    flags["scripted_pace"] = getattr(args, "pace", None)
    return load_config(flags=flags, env=os.environ, config_file=args.config)


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
        token = args.token or os.environ.get(_ACP_TOKEN_ENV)
        if not token:
            print(
                f"{PROGRAM} acp: --connect needs a token: pass --token or set {_ACP_TOKEN_ENV}",
                file=sys.stderr,
            )
            return 2
        connect = (args.connect, token)
    elif args.token is not None:
        print(f"{PROGRAM} acp: --token is only for --connect", file=sys.stderr)
        return 2
    config = _config(args)
    configure_logging(config.log_format, logging.DEBUG if args.debug else logging.INFO)
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
    config = _config(args)
    configure_logging(config.log_format, logging.DEBUG if args.debug else logging.INFO)
    config, token = ensure_tokens(config)
    trio.run(_serve_main, config, token, progress)
    return 0


async def _with_store(
    config: ServeConfig, action: Callable[[SessionStore], Awaitable[int]], progress: _Progress
) -> int:
    async with open_configured_store(config) as store:
        progress.started = True
        return await action(store)


def _run_sessions(args: argparse.Namespace, progress: _Progress) -> int:
    config = _config(args)
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
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["chat"]:
            return _run_chat(argv[1:])
        args = _parser().parse_args(argv)
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
