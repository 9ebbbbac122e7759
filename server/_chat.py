"""``agent-runtime chat``: the terminal IDE client (SPEC §7).

It connects to one session over WebSocket (creating the session over REST when no
``--session`` is given), renders the stream, executes every IDE tool call inside
``--workspace`` and asks the human to approve what the server's policy asks about.

Three tasks share one nursery, all ending together:

- the *link* keeps the session connected (catch-up, live events, reconnects);
- the *worker* handles open work one item at a time, oldest first: executes tool
  calls, answers approvals and questions; answers go out through the outbox;
- the *driver* sends the user's messages: one ``--message`` (exit status from
  that turn's end) or a prompt loop until end of input or ``/quit``.

A fourth task watches SIGINT: the first Ctrl-C cancels the running turn, the next
one (or one while idle) exits with status 130.

Entry points: :func:`run_chat` (what the CLI runs inside its ``trio.run``) and
:func:`chat_main` (the same with parsed :class:`ChatOptions`, for tests).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Final, TextIO, TypeVar

import attrs
import httpx
import trio

from sessions import JSONObject

from ._chat_command import ToolFailure
from ._chat_input import Decider, LineSource, TerminalInput
from ._chat_link import ChatError, Link, Outbox, check_response
from ._chat_render import Renderer, use_color
from ._chat_state import ChatState, Work
from ._chat_tools import Workspace

DEFAULT_URL: Final = "http://127.0.0.1:8765"
TOKEN_ENV: Final = "AGENT_RUNTIME_TOKEN"
URL_ENV: Final = "AGENT_RUNTIME_URL"
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

_T = TypeVar("_T")


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
    handle_signals: bool = True
    backoff: float = 0.25
    attempts: int = 8

    @property
    def interactive(self) -> bool:
        return self.message is None


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


def chat_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-runtime chat",
        description="Terminal IDE client: chat with a session and run its tool calls.",
    )
    add_chat_arguments(parser)
    return parser


def options_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> ChatOptions:
    """:class:`ChatOptions` from parsed arguments, with environment defaults."""
    globs = tuple(
        glob.strip() for value in args.auto_approve for glob in value.split(",") if glob.strip()
    )
    return ChatOptions(
        url=args.url or env.get(URL_ENV) or DEFAULT_URL,
        token=args.token or env.get(TOKEN_ENV) or None,
        session=args.session,
        workspace=args.workspace if args.workspace is not None else Path.cwd(),
        agent=args.agent,
        message=args.message,
        auto_approve=globs,
        yes=args.yes,
    )


async def run_chat(argv: Sequence[str]) -> int:
    """Parse the ``chat`` command line *argv* and run the client; returns the exit status.

    Cancellation: cancelling stops the client at once (see :func:`chat_main`).
    """
    argv = list(argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]  # what argparse.REMAINDER keeps when the user separates with --
    try:
        args = chat_parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    return await run_chat_args(args)


async def run_chat_args(args: argparse.Namespace) -> int:
    """Like :func:`run_chat` for arguments parsed with :func:`add_chat_arguments`.

    Cancellation: as :func:`chat_main`.
    """
    return await chat_main(options_from_args(args, os.environ))


async def chat_main(
    options: ChatOptions,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    lines: LineSource | None = None,
    workspace: Workspace | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run the chat client; returns the exit status (0 ok, 1 failed, 2 usage, 130 Ctrl-C).

    *out* receives the transcript (default stdout), *err* fatal errors (default
    stderr); *lines* is the human's input (default: stdin, interactive mode only);
    *workspace* replaces the executor built from ``options.workspace``.

    Cancellation: stops at once; a file write in progress still completes and a
    running command is killed. Answers not yet acknowledged are lost with the
    process, but the server keeps waiting for them (until their timeout), so a
    restarted client handles them again.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    renderer = Renderer(out, color=use_color(out, env))
    try:
        workspace = workspace if workspace is not None else Workspace(options.workspace)
    except ValueError as error:
        print(f"agent-runtime chat: {error}", file=err, flush=True)
        return EXIT_USAGE
    if not options.token:
        print(
            f"agent-runtime chat: a token is required: pass --token or set {TOKEN_ENV} "
            "(`agent-runtime serve` prints one when it generates it)",
            file=err,
            flush=True,
        )
        return EXIT_USAGE
    base = http_url(options.url)
    own_input: TerminalInput | None = None
    if options.interactive and lines is None:
        lines = own_input = TerminalInput()
    headers = {"Authorization": f"Bearer {options.token}"}
    try:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
            session_id = options.session or await create_session(http, options.agent)
            client = ChatClient(options, http, session_id, workspace, renderer, lines, env)
            return await client.run()
    except (ChatError, httpx.HTTPError) as error:
        renderer.end_stream()
        print(f"agent-runtime chat: {error}", file=err, flush=True)
        return EXIT_FAILED
    finally:
        if own_input is not None:
            await own_input.aclose()


async def create_session(http: httpx.AsyncClient, agent: str | None) -> str:
    """Create a session (``POST /v1/sessions``) and return its id.

    Raises:
        ChatError: the server refused (token, limits, unknown agent).
        httpx.HTTPError: the server could not be reached.

    Cancellation: safe; a session created just before is left empty.
    """
    body: JSONObject = {"agent": agent} if agent else {}
    response = await http.post("/v1/sessions", json=body)
    check_response(response)
    data = response.json()
    session_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(session_id, str):
        raise ChatError("the server's answer to POST /v1/sessions has no session id")
    return session_id


def http_url(url: str) -> str:
    """*url* without a trailing slash, ``ws(s)://`` turned into ``http(s)://``."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    for ws, http in (("ws://", "http://"), ("wss://", "https://")):
        if url.startswith(ws):
            url = http + url.removeprefix(ws)
    return url


class ChatClient:
    """One chat run against one session (see the module docstring for its tasks)."""

    def __init__(
        self,
        options: ChatOptions,
        http: httpx.AsyncClient,
        session_id: str,
        workspace: Workspace,
        renderer: Renderer,
        lines: LineSource | None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.options = options
        self.session_id = session_id
        self.workspace = workspace
        self.renderer = renderer
        self.lines = lines
        self.state = ChatState()
        self.outbox = Outbox()
        self.decider = Decider(
            renderer,
            workspace,
            yes=options.yes,
            auto_approve=options.auto_approve,
            interactive=options.interactive,
            lines=lines,
            env=env,
        )
        ws_url = "ws" + http_url(options.url).removeprefix("http")
        self.link = Link(
            http,
            f"{ws_url}/v1/sessions/{session_id}/ws",
            options.token or "",
            session_id,
            self.state,
            self.outbox,
            self._on_event,
            renderer.note,
            backoff=options.backoff,
            attempts=options.attempts,
        )
        self._prefix = f"chat-{secrets.token_hex(4)}"
        self._count = 0
        self._cancelling: set[str] = set()
        self._code: int | None = None
        self._scope = trio.CancelScope()

    def new_id(self) -> str:
        self._count += 1
        return f"{self._prefix}-{self._count}"

    def finish(self, code: int) -> None:
        if self._code is None:
            self._code = code
        self._scope.cancel()

    async def run(self) -> int:
        """Run until the driver finishes, the link fails or the user quits.

        Raises:
            ChatError: the link gave up (the caller prints it).

        Cancellation: as :func:`chat_main`.
        """
        self.renderer.note(f"[session {self.session_id} | workspace {self.workspace.root}]", "dim")
        failure: ChatError | None = None

        async def link() -> None:
            nonlocal failure
            try:
                await self.link.run()
            except ChatError as error:
                failure = error
                self.finish(EXIT_FAILED)

        async def drive() -> None:
            if self.options.message is not None:
                self.finish(await self._one_message(self.options.message))
            else:
                self.finish(await self._interactive())

        with self._scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(link)
                nursery.start_soon(self._worker)
                if self.options.handle_signals:
                    nursery.start_soon(self._signals)
                nursery.start_soon(drive)
        if failure is not None:
            raise failure
        return self._code if self._code is not None else EXIT_FAILED

    def _on_event(self, event: JSONObject) -> None:
        self.renderer.event(event)
        self.state.record(event)

    # -- the driver --------------------------------------------------------------------

    async def _send_message(self, text: str, agent: str | None) -> str | None:
        """Send a user message; its turn id, or ``None`` if the server rejected it."""
        command: JSONObject = {"type": "user_message", "id": self.new_id(), "content": text}
        if agent:
            command["agent"] = agent
        await self.outbox.send(command)
        ack = await self.outbox.wait_ack(str(command["id"]))
        if ack.get("status") == "rejected":
            self.renderer.note(
                f"! message refused: {ack.get('error') or ack.get('message')}", "red"
            )
            return None
        turn_id = ack.get("turn_id")
        return turn_id if isinstance(turn_id, str) else None

    async def _wait_turn(self, turn_id: str) -> str:
        await self.state.wait_until(lambda: turn_id in self.state.ended)
        return self.state.ended[turn_id]

    async def _one_message(self, text: str) -> int:
        turn_id = await self._send_message(text, self.options.agent)
        if turn_id is None:
            return EXIT_FAILED
        reason = await self._wait_turn(turn_id)
        return EXIT_OK if reason == "completed" else EXIT_FAILED

    async def _interactive(self) -> int:
        assert self.lines is not None
        self.renderer.note("[type a message; Ctrl-C cancels a turn; Ctrl-D or /quit exits]", "dim")
        agent = self.options.agent
        while True:
            await self.state.wait_until(lambda: self.state.idle and self.link.connections > 0)
            self.renderer.prompt("you> ")
            # Another client may start a turn meanwhile: its work comes first.
            line = await _unless(self.lines.readline, self.state, lambda: not self.state.idle)
            if line is _Busy:
                self.renderer.note("")
                continue
            if line is None:
                self.renderer.note("")
                return EXIT_OK
            assert isinstance(line, str)
            text = line.strip()
            if text in ("/quit", "/exit"):
                return EXIT_OK
            if not text:
                continue
            self.renderer.typed.append(text)
            turn_id = await self._send_message(text, agent)
            agent = None  # --agent switches the session once; it stays switched
            if turn_id is not None:
                await self._wait_turn(turn_id)

    # -- the worker ----------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            work = await self.state.next_work()
            fields: JSONObject | None
            if work.kind == "call":
                fields = await self._execute(work)
            elif work.kind == "approval":
                fields = await self._ask(work, self.decider.approval)
            else:
                fields = await self._ask(work, self.decider.answer)
            if fields is not None:
                await self.outbox.send(fields | {"id": self.new_id()})
            self.state.done(work)

    async def _execute(self, work: Work) -> JSONObject:
        event = work.event
        name, arguments = event.get("name"), event.get("arguments")
        base: JSONObject = {"type": "tool_result", "call_id": work.id}
        if not isinstance(name, str) or not isinstance(arguments, dict):
            return base | {"error": "malformed tool call"}
        try:
            result = await self.workspace.execute(name, arguments)
        except ToolFailure as error:
            return base | {"error": str(error)}
        return base | {"result": result}

    async def _ask(
        self, work: Work, decide: Callable[[JSONObject], Awaitable[JSONObject]]
    ) -> JSONObject | None:
        """The human's (or the rules') answer; ``None`` if it was resolved meanwhile."""
        answer = await _unless(
            lambda: decide(work.event), self.state, lambda: not self.state.still_open(work)
        )
        if answer is _Busy:
            self.renderer.note("[no longer pending: answered elsewhere, expired or cancelled]")
            return None
        assert isinstance(answer, dict)
        return answer

    # -- Ctrl-C --------------------------------------------------------------------------

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            async for _ in signals:
                turn = self.state.running_turn
                if turn is not None and turn not in self._cancelling:
                    self._cancelling.add(turn)
                    self.renderer.note("^C cancelling the turn (Ctrl-C again quits)", "yellow")
                    await self.outbox.send({"type": "cancel", "id": self.new_id(), "turn_id": turn})
                else:
                    self.renderer.note("^C quitting", "yellow")
                    self.finish(EXIT_INTERRUPTED)


class _Busy:
    """Marker: the wait was abandoned because the condition became true."""


async def _unless(
    fn: Callable[[], Awaitable[_T]], state: ChatState, condition: Callable[[], bool]
) -> _T | type[_Busy]:
    """``await fn()``, abandoned (returning :class:`_Busy`) as soon as *condition* holds."""
    result: _T | type[_Busy] = _Busy

    async def run(cancel: trio.CancelScope) -> None:
        nonlocal result
        result = await fn()
        cancel.cancel()

    async def watch(cancel: trio.CancelScope) -> None:
        await state.wait_until(condition)
        cancel.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, nursery.cancel_scope)
        nursery.start_soon(watch, nursery.cancel_scope)
    return result
