"""The ``agent-runtime`` command: ``serve``, ``sessions list|show|delete`` and ``chat``.

This module holds the program's only ``trio.run``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import attrs
import trio

from sessions import JSON, AgentRuntimeError, Append, SessionStore, dumps, now

from ._auth import LOCAL_PRINCIPAL, ensure_tokens
from ._config import MEMORY_DB, ServeConfig, load_config
from ._errors import ConfigurationError
from ._logging import configure_logging
from ._serve import open_configured_store, serve

SCRIPTED_NOTE = (
    "using the scripted model (offline demo); pass --llm openai --llm-url URL --model NAME "
    "(API key in AGENT_RUNTIME_LLM_API_KEY) to use a real LLM"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-runtime", description="Run AI coding agents for IDE clients."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve_cmd = commands.add_parser("serve", help="run the server")
    serve_cmd.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="port to bind, 0 for any (default 8765)")
    _store_flags(serve_cmd)
    serve_cmd.add_argument("--llm", choices=["scripted", "openai"], help="model provider")
    serve_cmd.add_argument("--llm-url", help="base URL of an OpenAI-compatible API")
    serve_cmd.add_argument("--model", help="model name to request")
    serve_cmd.add_argument("--modes", type=Path, help="TOML file overriding the agent modes")
    serve_cmd.add_argument("--policy", type=Path, help="TOML file with approval rules")
    serve_cmd.add_argument("--pace", type=float, help="scripted model: seconds between chunks")
    serve_cmd.add_argument("--log-format", choices=["text", "json"], help="log line format")

    sessions_cmd = commands.add_parser("sessions", help="inspect the session database")
    _store_flags(sessions_cmd)
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

    # Listed for --help only: main() hands "chat ..." to the client's own parser.
    commands.add_parser("chat", help="terminal IDE client (agent-runtime chat --help)")
    return parser


def _store_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--db", help=f"SQLite database path, or {MEMORY_DB}")
    parser.add_argument("--durability", choices=["normal", "full"], help="SQLite durability")


def _config(args: argparse.Namespace) -> ServeConfig:
    names = ("host", "port", "db", "durability", "llm", "llm_url", "model", "modes", "policy")
    flags = {name: getattr(args, name, None) for name in (*names, "log_format")}
    flags["scripted_pace"] = getattr(args, "pace", None)
    return load_config(flags=flags, env=os.environ, config_file=args.config)


def _say(line: str) -> None:
    print(line, flush=True)


async def _serve_main(config: ServeConfig, token: str | None) -> None:
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(serve, config)
        _say(f"listening on {url}")
        if config.llm == "scripted":
            _say(SCRIPTED_NOTE)
        if token is not None:
            _say("no tokens configured; generated one for this run. Try:")
            _say(f"  curl -H 'Authorization: Bearer {token}' {url}/v1/sessions")
            _say(f"  agent-runtime chat --url {url} --token {token}")


def _run_serve(args: argparse.Namespace) -> int:
    config = _config(args)
    configure_logging(config.log_format)
    config, token = ensure_tokens(config)
    trio.run(_serve_main, config, token)
    return 0


async def _with_store(config: ServeConfig, action: Callable[[SessionStore], Awaitable[int]]) -> int:
    async with open_configured_store(config) as store:
        return await action(store)


def _run_sessions(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.action == "list":
        owners = args.owner or sorted({*config.tokens.values(), LOCAL_PRINCIPAL})
        return trio.run(_with_store, config, lambda s: _list(s, owners, args.limit))
    if args.action == "show":
        return trio.run(_with_store, config, lambda s: _show(s, args.session_id, args.events))
    return trio.run(_with_store, config, lambda s: _delete(s, args.session_id))


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
            _say(dumps(event.to_json()))
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
    try:
        module = importlib.import_module("server._chat")
    except ModuleNotFoundError as error:
        if error.name != "server._chat":
            raise
        print("agent-runtime: the chat client is not available in this build", file=sys.stderr)
        return 2
    run_chat: Callable[[list[str]], Awaitable[int]] = module.run_chat
    return trio.run(run_chat, argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``agent-runtime`` command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["chat"]:
            return _run_chat(argv[1:])
        args = _parser().parse_args(argv)
        if args.command == "serve":
            return _run_serve(args)
        return _run_sessions(args)
    except ConfigurationError as error:
        print(f"agent-runtime: configuration error: {error}", file=sys.stderr)
        return 2
    except AgentRuntimeError as error:
        print(f"agent-runtime: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
