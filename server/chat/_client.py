"""One chat run against one session: the link, the worker, the driver and Ctrl-C.

Three tasks share one nursery, all ending together:

- the *link* keeps the session connected (catch-up, live events, reconnects);
- the *worker* (:mod:`._worker`) handles open work one item at a time, oldest
  first: executes tool calls, answers approvals and questions; answers go out
  through the outbox. An item that stops being open while it is handled (its turn
  ended, or another client answered it) is abandoned, which kills a running command;
- the *driver* sends the user's messages: one ``--message`` (exit status from
  that turn's end) or a prompt loop until end of input or ``/quit``.

A fourth task watches for interrupts. The first Ctrl-C cancels the running turn:
a command it is running is killed first (its whole process group), and its
``tool_result`` says so, then the ``cancel`` goes out. The next Ctrl-C (or one
while idle) exits with status 130; SIGTERM and SIGHUP exit too. Exiting cancels
the nursery, which kills a running command as well.
"""

from __future__ import annotations

import secrets
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import assert_never

import httpx
import trio

from sessions import JSONObject

from ._input import Decider, LineSource, TerminalInput, ask
from ._journal import Journal
from ._link import ChatError, Link, Outbox
from ._options import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_APPROVED,
    EXIT_OK,
    ChatOptions,
    http_url,
)
from ._prompt import PromptSettings
from ._render import Renderer
from ._slash import (
    COMMAND_NAMES,
    Handled,
    Quit,
    SlashCommands,
    StartedTurn,
    SwitchSession,
    message_text,
    parse,
)
from ._slash_parse import KEYS_HELP
from ._state import ChatState
from ._text import plural
from ._tools import Workspace
from ._worker import Busy, Worker, unless

Interrupts = trio.abc.ReceiveChannel[object]
NEW_SESSION = "new"  # ChatClient.switch_to: create a session


class ChatClient:
    """One chat run against one session (see the module docstring for its tasks).

    *interrupts* replaces the process's signals as the source of Ctrl-Cs (tests);
    each item received is one Ctrl-C. *instructions* (the workspace's
    ``AGENTS.md``) go with every ``hello``.
    """

    def __init__(
        self,
        options: ChatOptions,
        http: httpx.AsyncClient,
        session_id: str,
        workspace: Workspace,
        renderer: Renderer,
        lines: LineSource | None,
        env: Mapping[str, str] | None = None,
        interrupts: Interrupts | None = None,
        instructions: str | None = None,
    ) -> None:
        self.options = options
        self.session_id = session_id
        self.workspace = workspace
        self.renderer = renderer
        self.lines = lines
        self.interrupts = interrupts
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
        if not options.interactive:
            renderer.retry_hint = (
                f"run the command again; add --session {session_id} to continue this session"
            )
        # /undo and /diff: what the agent's file tools change is journaled first.
        self.journal = Journal(workspace, session_id)
        self.worker = Worker(
            self.state, self.outbox, self.decider, self.journal, workspace, renderer, self.new_id
        )
        self.slash = SlashCommands(
            renderer, http, session_id, self._send_command, self.decider, self.journal
        )
        if isinstance(lines, TerminalInput):
            lines.use_prompt(
                PromptSettings(workspace.root, COMMAND_NAMES, lambda: self.slash.agent_names)
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
            instructions=instructions,
        )
        self._prefix = f"chat-{secrets.token_hex(4)}"
        self._count = 0
        self._cancelling: set[str] = set()
        self._code: int | None = None
        self._scope = trio.CancelScope()
        # Set by /session ID or /new: the session the next run of the client attaches
        # to (NEW_SESSION: a new one), in the same terminal (chat_main loops).
        self.switch_to: str | None = None

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

        Cancellation: stops at once; a running command is killed.
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
                nursery.start_soon(self.worker.run)
                if self.options.handle_signals or self.interrupts is not None:
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
            reason = next((v for v in (ack.get("error"), ack.get("message")) if v), "refused")
            code = f" [{ack.get('code')}]" if isinstance(ack.get("code"), str) else ""
            self.renderer.note(f"! message refused{code}: {reason}", "red")
            return None
        turn_id = ack.get("turn_id")
        return turn_id if isinstance(turn_id, str) else None

    async def _send_command(self, fields: JSONObject) -> JSONObject:
        """Send a command (*fields* without ``id``) through the outbox; its ack."""
        command = fields | {"id": self.new_id()}
        await self.outbox.send(command)
        return await self.outbox.wait_ack(str(command["id"]))

    async def _wait_turn(self, turn_id: str) -> str:
        await self.state.wait_until(lambda: turn_id in self.state.ended)
        return self.state.ended[turn_id]

    async def _one_message(self, text: str) -> int:
        turn_id = await self._send_message(text, self.options.agent)
        if turn_id is None:
            return EXIT_FAILED
        reason = await self._wait_turn(turn_id)
        if reason == "cancelled" and turn_id in self._cancelling:
            return EXIT_INTERRUPTED  # the user's Ctrl-C
        if reason != "completed":
            return EXIT_FAILED
        if self.decider.refused:
            refused = plural(self.decider.refused, "approval")
            self.renderer.note(
                f"[exit status {EXIT_NOT_APPROVED}: {refused} refused because nobody could be "
                "asked; pass --yes or --auto-approve TOOLS to allow]",
                "yellow",
            )
            return EXIT_NOT_APPROVED
        return EXIT_OK

    async def _interactive(self) -> int:
        lines = self.lines
        assert lines is not None
        self.renderer.note(f"[type a message; /help lists commands; {KEYS_HELP}]", "dim")
        await self.slash.refresh_agents()  # names for completion
        agent = self.options.agent
        while True:
            await self.state.wait_until(lambda: self.state.idle and self.link.connections > 0)
            # Another client may start a turn meanwhile: its work comes first.
            line = await unless(
                lambda: ask(lines, self.renderer, "you> ", chat=True),
                self.state,
                lambda: not self.state.idle,
            )
            if line is Busy:
                self.renderer.note("")
                continue
            if line is None:
                self.renderer.note("")
                return EXIT_OK
            assert isinstance(line, str)
            text = line.strip()
            if not text:
                continue
            command = parse(text)
            if command is not None:  # a slash command: handled here, never sent to the model
                outcome = await self.slash.run(command)
                match outcome:
                    case Quit():
                        return EXIT_OK
                    case SwitchSession(session_id=target):
                        self.switch_to = target if target is not None else NEW_SESSION
                        return EXIT_OK
                    case StartedTurn(turn_id=started):
                        await self._wait_turn(started)
                    case Handled():
                        pass
                    case _:
                        assert_never(outcome)
                continue
            text = message_text(text)
            self.renderer.typed.append(text)
            turn_id = await self._send_message(text, agent)
            agent = None  # --agent switches the session once; it stays switched
            if turn_id is not None:
                await self._wait_turn(turn_id)

    # -- Ctrl-C --------------------------------------------------------------------------

    async def _signals(self) -> None:
        async with self._interrupt_source() as source:
            async for signum in source:
                if isinstance(signum, int) and signum != signal.SIGINT:
                    self.renderer.note(f"[{signal.Signals(signum).name}: quitting]", "yellow")
                    self.finish(128 + signum)
                else:
                    await self._interrupt()

    @asynccontextmanager
    async def _interrupt_source(self) -> AsyncIterator[AsyncIterator[object]]:
        if self.interrupts is not None:
            async with self.interrupts:
                yield self.interrupts
            return
        signals = [signal.SIGINT, signal.SIGTERM]
        if sys.platform != "win32":
            signals.append(signal.SIGHUP)  # the terminal went away
        with trio.open_signal_receiver(*signals) as receiver:
            yield receiver

    async def _interrupt(self) -> None:
        turn = self.state.running_turn
        if turn is None or turn in self._cancelling:
            self.renderer.note("^C quitting", "yellow")
            self.finish(EXIT_INTERRUPTED)
            return
        self._cancelling.add(turn)
        self.renderer.note("^C cancelling the turn (Ctrl-C again quits)", "yellow")
        running = self.worker.running
        if running is not None:
            # Kill the command first, so the result the server records says so.
            running.stop.set()
            with trio.move_on_after(self.options.kill_grace + 1.0):
                await running.answered.wait()
        await self.outbox.send({"type": "cancel", "id": self.new_id(), "turn_id": turn})


__all__ = ["ChatClient", "ChatError", "Interrupts"]
