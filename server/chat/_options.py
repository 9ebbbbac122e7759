"""The ``agent-runtime chat`` command line: its flags, their environment defaults, exit codes."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, Literal, NoReturn, TypeAlias

import attrs

from server.client import ClientError, base_url

from ._command import KILL_GRACE
from ._tools import DEFAULT_TIMEOUT

DEFAULT_URL: Final = "http://127.0.0.1:8765"
TOKEN_ENV: Final = "AGENT_RUNTIME_TOKEN"
URL_ENV: Final = "AGENT_RUNTIME_URL"
COMMAND_TIMEOUT_ENV: Final = "AGENT_RUNTIME_COMMAND_TIMEOUT"
# What --session and /session accept as a session id (the server's look like this);
# anything else would be spliced into URL paths.
SESSION_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,200}")

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # the turn did not complete, or the client could not go on
EXIT_USAGE: Final = 2
EXIT_NOT_APPROVED: Final = 3  # --message: completed, but approvals were refused unasked
EXIT_INTERRUPTED: Final = 130

OutputFormat: TypeAlias = Literal["text", "json"]
OUTPUT_FORMATS: Final[tuple[OutputFormat, ...]] = ("text", "json")


class UsageError(Exception):
    """A flag or environment value the client cannot use; ``str()`` says which and why."""


@attrs.frozen
class ChatOptions:
    """Everything ``chat`` needs; ``message`` set means non-interactive."""

    url: str = DEFAULT_URL
    token: str | None = None
    session: str | None = None
    workspace: Path = attrs.field(factory=Path.cwd)
    agent: str | None = None
    message: str | None = None
    auto_approve: tuple[str, ...] = ()
    yes: bool = False
    command_timeout: float = DEFAULT_TIMEOUT
    handle_signals: bool = True
    backoff: float = 0.25
    attempts: int = 8
    kill_grace: float = KILL_GRACE
    send_instructions: bool = True  # the workspace's AGENTS.md (see ._instructions)
    output: OutputFormat = "text"  # "json": NDJSON events on stdout (see ._ndjson)

    @property
    def interactive(self) -> bool:
        return self.message is None


def seconds(text: str) -> float:
    """A positive, finite number of seconds.

    Raises:
        ValueError: anything else (argparse turns it into a usage error).
    """
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{text!r} is not a positive number of seconds")
    return value


def _seconds_flag(text: str) -> float:
    try:
        return seconds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_chat_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``chat`` options to *parser*."""
    parser.add_argument("--url", help=f"server URL (default ${URL_ENV} or {DEFAULT_URL})")
    parser.add_argument("--token", help=f"bearer token (default ${TOKEN_ENV})")
    parser.add_argument("--session", help="resume this session instead of creating one")
    parser.add_argument(
        "--workspace", type=Path, help="directory the tools work in (default: current)"
    )
    parser.add_argument("--agent", help="agent for the (first) message, e.g. coder")
    parser.add_argument(
        "-m", "--message", help="send this one message, answer non-interactively, exit"
    )
    parser.add_argument(
        "--auto-approve",
        action="append",
        default=[],
        metavar="RULES",
        help="comma-separated tool globs approved without asking, e.g. 'write_file,read_*'",
    )
    parser.add_argument("-y", "--yes", action="store_true", help="approve every request")
    parser.add_argument(
        "--output",
        choices=OUTPUT_FORMATS,
        default="text",
        help="text: the transcript for people (default); json (with --message): one JSON "
        "object per line on stdout, the session's events as the server sends them, then "
        '{"type": "chat.exit", "code": N, "reason": ...}; notes and errors go to stderr',
    )
    parser.add_argument(
        "--no-instructions",
        action="store_true",
        help="do not send the workspace's AGENTS.md (or CLAUDE.md, "
        ".agent-runtime/instructions.md) as the session's project instructions",
    )
    parser.add_argument(
        "--command-timeout",
        type=_seconds_flag,
        metavar="SECONDS",
        help="execute_command time limit when the agent gives none "
        f"(default ${COMMAND_TIMEOUT_ENV} or {DEFAULT_TIMEOUT:g})",
    )


class ChatArgumentParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` that remembers the usage error it exits with.

    argparse prints its usage and message to stderr and raises ``SystemExit(2)``;
    ``--output json`` also needs the message, for its ``chat.exit`` line.
    """

    usage_error: str | None = None

    def error(self, message: str) -> NoReturn:
        self.usage_error = message
        super().error(message)


def chat_parser() -> ChatArgumentParser:
    parser = ChatArgumentParser(
        prog="agent-runtime chat",
        description="Terminal IDE client: chat with a session and run its tool calls.",
        epilog=(
            "exit status (and the reason of --output json's chat.exit line): "
            "0 ok; 1 failed: the turn did not complete (or the client could not go on); "
            "2 usage; 3 not_approved: with --message, the turn completed but approvals were "
            "refused because nobody could be asked (pass --yes or --auto-approve); "
            "130 interrupted: Ctrl-C; 128+N signal: killed by signal N"
        ),
    )
    add_chat_arguments(parser)
    return parser


def requested_output(argv: Sequence[str]) -> OutputFormat:
    """The ``--output`` *argv* asks for, read from its words alone.

    For when :func:`chat_parser` refused *argv*, so there is no namespace to ask.
    As argparse would read it: the last ``--output FORMAT`` or ``--output=FORMAT``
    before a ``--`` decides, also abbreviated (``--out json``: no other flag starts
    with ``--o``); ``json`` only if its value is exactly that (an invalid one is
    the usage error, reported as text).
    """
    output: OutputFormat = "text"
    words = iter(argv)
    for word in words:
        if word == "--":  # argparse: the rest are values, never flags
            break
        name, equals, value = word.partition("=")
        if len(name) < len("--o") or not "--output".startswith(name):
            continue
        if not equals:
            value = next(words, "")
        output = "json" if value == "json" else "text"
    return output


def options_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> ChatOptions:
    """:class:`ChatOptions` from parsed arguments, with environment defaults.

    Raises:
        UsageError: an environment value is unusable.
    """
    globs = tuple(
        glob.strip() for value in args.auto_approve for glob in value.split(",") if glob.strip()
    )
    timeout: float | None = getattr(args, "command_timeout", None)
    if timeout is None and env.get(COMMAND_TIMEOUT_ENV, "").strip():
        try:
            timeout = seconds(env[COMMAND_TIMEOUT_ENV].strip())
        except ValueError as error:
            raise UsageError(f"${COMMAND_TIMEOUT_ENV}: {error}") from None
    output: OutputFormat = "json" if getattr(args, "output", "text") == "json" else "text"
    if args.message is not None and not args.message.strip():
        raise UsageError("--message is empty: say what the agent should do")
    if output == "json" and args.message is None:
        raise UsageError("--output json needs --message: it is for one-shot, scripted runs")
    return ChatOptions(
        url=args.url or env.get(URL_ENV) or DEFAULT_URL,
        token=args.token or env.get(TOKEN_ENV) or None,
        session=args.session,
        workspace=args.workspace if args.workspace is not None else Path.cwd(),
        agent=args.agent,
        message=args.message,
        auto_approve=globs,
        yes=args.yes,
        command_timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
        send_instructions=not getattr(args, "no_instructions", False),
        output=output,
    )


def http_url(url: str) -> str:
    """*url* without a trailing slash, ``ws(s)://`` turned into ``http(s)://``.

    Raises:
        UsageError: not an ``http``, ``https``, ``ws`` or ``wss`` URL with a host.
    """
    try:
        return base_url(url)
    except ClientError as error:  # the library's wording, as a usage error of --url
        raise UsageError(f"--url: {error}") from None
