"""The entry points of ``agent-runtime chat``: parse, connect, run, report.

It connects to one session over WebSocket (creating the session over REST when no
``--session`` is given, checking it exists when one is), renders the stream,
executes every IDE tool call inside ``--workspace`` and asks the human to approve
what the server's policy asks about. How one run works is in :mod:`._client`;
the flags and exit statuses are in :mod:`._options`.

Every failure ends in one line the user can act on (``agent-runtime chat: ...``)
and an exit status, never a traceback. With ``--output json`` the transcript is
NDJSON on stdout instead (:mod:`._ndjson`), ending in a ``chat.exit`` line.
On a terminal the status line is redrawn by a task of :func:`chat_main`'s own
nursery, and the output of a running command is shown live (via
:data:`._command.LIVE_OUTPUT`, set for the client's tasks only).

Entry points: :func:`run_chat` (what the CLI runs inside its ``trio.run``) and
:func:`chat_main` (the same with parsed :class:`ChatOptions`, for tests).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TextIO

import httpx
import trio

from server.client import describe_error
from sessions import JSONObject

from ._client import NEW_SESSION, ChatClient, Interrupts
from ._command import LIVE_OUTPUT
from ._input import LineSource, TerminalInput
from ._instructions import read_instructions
from ._link import ChatError, ServerBusy, check_response
from ._ndjson import NdjsonRenderer
from ._options import (
    EXIT_FAILED,
    EXIT_USAGE,
    SESSION_ID,
    TOKEN_ENV,
    URL_ENV,
    ChatOptions,
    UsageError,
    chat_parser,
    http_url,
    options_from_args,
    requested_output,
)
from ._render import Renderer, terminal_renderer
from ._text import visible_block
from ._tools import Workspace


async def run_chat(argv: Sequence[str]) -> int:
    """Parse the ``chat`` command line *argv* and run the client; returns the exit status.

    A usage error argparse reports (unknown flag, missing or bad value) exits 2 with
    argparse's usual text on stderr and, when *argv* asks for ``--output json``
    (:func:`requested_output`), the ``chat.exit`` line with argparse's message.

    Cancellation: cancelling stops the client at once (see :func:`chat_main`).
    """
    argv = list(argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]  # what argparse.REMAINDER keeps when the user separates with --
    parser = chat_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
        if parser.usage_error is not None and requested_output(argv) == "json":
            # argparse has printed its usage and message to stderr; a script reads the
            # last line of stdout, as after every other usage error.
            error = visible_block(parser.usage_error)
            NdjsonRenderer(sys.stdout, sys.stderr).exit(code, error)
        return code
    return await run_chat_args(args)


async def run_chat_args(args: argparse.Namespace, *, err: TextIO | None = None) -> int:
    """Like :func:`run_chat` for arguments parsed with :func:`add_chat_arguments`.

    Cancellation: as :func:`chat_main`.
    """
    try:
        options = options_from_args(args, os.environ)
    except UsageError as error:
        failures = _Failures(err if err is not None else sys.stderr)
        failures.fail(error)
        if getattr(args, "output", "text") == "json":  # a script reads the last line
            NdjsonRenderer(sys.stdout, failures.err).exit(EXIT_USAGE, failures.last)
        return EXIT_USAGE
    return await chat_main(options, err=err)


async def chat_main(
    options: ChatOptions,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    lines: LineSource | None = None,
    workspace: Workspace | None = None,
    env: Mapping[str, str] | None = None,
    interrupts: Interrupts | None = None,
) -> int:
    """Run the chat client; returns the exit status (see :mod:`._options`).

    *out* receives the transcript (default stdout), *err* fatal errors (default
    stderr); *lines* is the human's input (default: stdin, interactive mode only);
    *workspace* replaces the executor built from ``options.workspace``; each item
    from *interrupts* acts as one Ctrl-C.

    Cancellation: stops at once; a file write in progress still completes and a
    running command is killed. Answers not yet acknowledged are lost with the
    process, but the server keeps waiting for them (until their timeout), so a
    restarted client handles them again.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    if options.output == "json":
        ndjson = NdjsonRenderer(out, err)
        failures = _Failures(err)
        code = await _chat(options, ndjson, failures, lines, workspace, env, interrupts)
        ndjson.exit(code, failures.last)
        return code
    renderer = terminal_renderer(out, env)
    return await _chat(options, renderer, _Failures(err), lines, workspace, env, interrupts)


async def _chat(
    options: ChatOptions,
    renderer: Renderer,
    failures: _Failures,
    lines: LineSource | None,
    workspace: Workspace | None,
    env: Mapping[str, str] | None,
    interrupts: Interrupts | None,
) -> int:
    """:func:`chat_main` with its renderer chosen: check, connect, run, report."""
    if options.output == "json" and options.interactive:
        failures.fail("--output json needs --message: it is for one-shot, scripted runs")
        return EXIT_USAGE
    try:
        base = http_url(options.url)
        if options.session is not None and not SESSION_ID.fullmatch(options.session):
            raise UsageError(f"--session {options.session!r} is not a session id (ses_...)")
        if workspace is None:
            workspace = Workspace(
                options.workspace,
                default_timeout=options.command_timeout,
                kill_grace=options.kill_grace,
            )
    except (UsageError, ValueError) as error:
        failures.fail(error)
        return EXIT_USAGE
    if not options.token:
        failures.fail(
            f"a token is required: pass --token or set {TOKEN_ENV} "
            "(`agent-runtime serve` prints one when it generates it)",
        )
        return EXIT_USAGE
    own_input: TerminalInput | None = None
    if options.interactive and lines is None:
        lines = own_input = TerminalInput()
    instructions: str | None = None
    if options.send_instructions:
        name, instructions = read_instructions(
            workspace.root, lambda warning: failures.warn(f"warning: {warning}")
        )
        if name is not None:
            renderer.note(f"[project instructions: {name}]", "dim")
    headers = {"Authorization": f"Bearer {options.token}"}
    try:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
            if options.session is not None:
                await check_session(http, options.session)
                session_id = options.session
            else:
                session_id = await create_session(http, options.agent, instructions)
            while True:
                client = ChatClient(
                    options,
                    http,
                    session_id,
                    workspace,
                    renderer,
                    lines,
                    env,
                    interrupts,
                    instructions=instructions,
                )
                code = await _run_live(renderer, client.run)
                if client.switch_to is None:
                    return code
                # /session ID or /new: the same terminal, another session.
                if client.switch_to == NEW_SESSION:
                    session_id = await create_session(http, None, instructions)
                else:
                    await check_session(http, client.switch_to)
                    session_id = client.switch_to
    except ChatError as error:
        renderer.end_stream()
        failures.fail(error)
        return EXIT_FAILED
    except ServerBusy as error:
        renderer.end_stream()
        failures.fail(f"the server at {base} failed: {error}; try again later")
        return EXIT_FAILED
    except httpx.TransportError as error:
        renderer.end_stream()
        failures.fail(
            f"cannot reach the server at {base}: {describe_error(error)} "
            f"(is `agent-runtime serve` running there? see --url or ${URL_ENV})",
        )
        return EXIT_FAILED
    except httpx.HTTPError as error:
        renderer.end_stream()
        failures.fail(f"talking to {base} failed: {describe_error(error)}")
        return EXIT_FAILED
    finally:
        if own_input is not None:
            await own_input.aclose()


async def _run_live(renderer: Renderer, run: Callable[[], Awaitable[int]]) -> int:
    """``await run()`` with, on a live terminal, the status line and live command output.

    Raises:
        Exception: what *run* raises (as itself, not in an exception group).
    """
    status = renderer.status
    if status is None:
        return await run()
    failure: Exception | None = None
    code = EXIT_FAILED
    # Tasks started by run() copy this context: their commands stream to the renderer.
    token = LIVE_OUTPUT.set(renderer.command_output)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(status.run)
            try:
                code = await run()
            except Exception as error:  # re-raised below, outside the nursery
                failure = error
            nursery.cancel_scope.cancel()
    finally:
        LIVE_OUTPUT.reset(token)
    if failure is not None:
        raise failure
    return code


class _Failures:
    """Prints fatal errors (and warnings) to *err*, one line each; remembers the last error."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.last: str | None = None

    def fail(self, error: object) -> None:
        self.last = visible_block(str(error))
        self.warn(error)

    def warn(self, message: object) -> None:
        print(f"agent-runtime chat: {visible_block(str(message))}", file=self.err, flush=True)


async def create_session(
    http: httpx.AsyncClient, agent: str | None, instructions: str | None = None
) -> str:
    """Create a session (``POST /v1/sessions``) with *instructions*; return its id.

    Raises:
        ChatError: the server refused (token, limits, unknown agent) or its answer
            is not an agent-runtime's.
        httpx.HTTPError: the server could not be reached.

    Cancellation: safe; a session created just before is left empty.
    """
    body: JSONObject = {"agent": agent} if agent else {}
    if instructions is not None:
        body["instructions"] = instructions
    response = await http.post("/v1/sessions", json=body)
    check_response(response)
    session_id = _json_field(response, "id")
    if not isinstance(session_id, str):
        raise ChatError(f"the answer of {response.url} to POST /v1/sessions has no session id")
    return session_id


async def check_session(http: httpx.AsyncClient, session_id: str) -> None:
    """Make sure *session_id* exists and is ours (``GET /v1/sessions/{id}``).

    Raises:
        ChatError: no such session for this token, or the token was refused.
        httpx.HTTPError: the server could not be reached.

    Cancellation: safe.
    """
    response = await http.get(f"/v1/sessions/{session_id}")
    check_response(response, session_id)
    if _json_field(response, "id") != session_id:
        raise ChatError(f"{response.url} did not answer with session {session_id!r}")


def _json_field(response: httpx.Response, key: str) -> object:
    try:
        data = response.json()
    except ValueError:
        raise ChatError(
            f"{response.url} did not answer with JSON; is it an agent-runtime server?"
        ) from None
    return data.get(key) if isinstance(data, dict) else None
