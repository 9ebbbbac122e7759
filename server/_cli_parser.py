"""The ``agent-runtime`` command line's grammar: its verbs, their flags, and flags → config.

:func:`command_parser` builds the :mod:`argparse` parser of every verb but
``chat`` (whose client parses its own arguments); :func:`config_from_args`
turns the parsed flags into a :class:`~server._config.ServeConfig`, merged with
the environment and the ``--config`` file. Separate from ``_cli.py``, which
runs the verbs, because what the command accepts is one thing to read on its own.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from agents.model import PROVIDERS

from ._config import MEMORY_DB, ServeConfig, load_config
from ._startup import PROGRAM, version

# `acp --connect`'s token, when --token is not given: the same variable `chat` reads.
ACP_TOKEN_ENV = "AGENT_RUNTIME_TOKEN"


def command_parser() -> argparse.ArgumentParser:
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
    llm.add_argument(
        "--llm-idle-timeout", metavar="S", help="between two streamed events (default 60)"
    )
    llm.add_argument(
        "--llm-retries", metavar="N", help="retries before the first token (default 3)"
    )
    llm.add_argument(
        "--llm-max-connections", metavar="N", help="concurrent upstream connections (default 100)"
    )
    llm.add_argument(
        "--llm-max-keepalive", metavar="N", help="idle upstream connections kept (default 100)"
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
    acp_cmd.add_argument("--token", help=f"bearer token for --connect (default ${ACP_TOKEN_ENV})")
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


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    flags = {name: getattr(args, name, None) for name in _FLAG_SETTINGS}
    flags["scripted_pace"] = getattr(args, "pace", None)
    return load_config(flags=flags, env=os.environ, config_file=args.config)
