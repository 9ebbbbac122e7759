"""Slash commands: lines typed at the chat prompt that the client handles itself.

A line starting with ``/`` never reaches the model: :func:`parse` splits it into a
command and its argument and :class:`SlashCommands` runs it (:data:`COMMANDS` is
the table, with the help text ``/help`` shows). An unknown command gets a hint. A
line starting with ``//`` is a message starting with ``/`` (one slash removed).

Commands for the server (``/agent``, ``/model``, ``/compact``) go through the
client's outbox (*send*: the command fields, without ``id``, to its ack), so they
are idempotent across reconnects and acknowledged. ``/undo`` and ``/diff`` read the
client's :class:`~._journal.Journal`.

The table, parsing and outcomes are :mod:`._slash_parse`; ``/diff``'s diffs are
computed by :mod:`._session_diff`.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Awaitable, Callable
from typing import TypeAlias

import httpx
import trio

from sessions import JSON, JSONObject

from ._input import Decider
from ._journal import Journal, UndoRefused
from ._link import ChatError, ServerBusy, check_response
from ._options import SESSION_ID
from ._render import Renderer
from ._session_diff import in_git, session_diff
from ._slash_parse import (
    COMMAND_NAMES,
    COMMANDS,
    INPUT_HELP,
    KEYS_HELP,
    Handled,
    Outcome,
    Parsed,
    Quit,
    SlashCommand,
    StartedTurn,
    SwitchSession,
    message_text,
    parse,
)
from ._text import plural, visible

Send: TypeAlias = Callable[[JSONObject], Awaitable[JSONObject]]


class SlashCommands:
    """Runs the slash commands of one chat run (see the module docstring)."""

    def __init__(
        self,
        renderer: Renderer,
        http: httpx.AsyncClient,
        session_id: str,
        send: Send,
        decider: Decider,
        journal: Journal | None,
    ) -> None:
        self.renderer = renderer
        self.http = http
        self.session_id = session_id
        self.send = send
        self.decider = decider
        self.journal = journal
        self.agent_names: list[str] = []  # for completion; filled by load_agents

    async def load_agents(self) -> list[JSONObject]:
        """The server's agents (``GET /v1/agents``); remembers their names.

        Raises:
            httpx.HTTPError: the server could not be asked.
        """
        response = await self.http.get("/v1/agents")
        response.raise_for_status()
        data: JSON = response.json()
        raw = data.get("agents") if isinstance(data, dict) else None
        agents = [a for a in raw if isinstance(a, dict)] if isinstance(raw, list) else []
        self.agent_names = [str(a.get("name")) for a in agents]
        return agents

    async def refresh_agents(self) -> None:
        """Learn the agents' names for completion; a failure only leaves them unknown."""
        with contextlib.suppress(httpx.HTTPError, ValueError):
            await self.load_agents()

    async def run(self, parsed: Parsed) -> Outcome:
        """Run *parsed*; what the driver does next.

        Cancellation: safe; a command already handed to the outbox is still delivered.
        """
        arg = parsed.argument
        try:
            match parsed.name:
                case "/quit" | "/exit":
                    return Quit()
                case "/help":
                    self._help()
                case "/agent":
                    await self._agent(arg)
                case "/model":
                    await self._model(arg)
                case "/compact":
                    return await self._compact(arg)
                case "/sessions":
                    await self._sessions()
                case "/session":
                    return await self._session(arg)
                case "/new":
                    return SwitchSession(None)
                case "/undo":
                    await self._undo(arg)
                case "/diff":
                    await self._diff()
                case "/cost":
                    await self._cost()
                case "/auto-approve":
                    self._auto_approve(arg)
                case _:
                    self.renderer.note(
                        f"unknown command {visible(parsed.name)}; /help lists them "
                        "(// sends a message starting with /)",
                        "yellow",
                    )
        except (httpx.HTTPError, ValueError) as error:
            self.renderer.note(f"! {parsed.name} failed: {error}", "red")
        return Handled()

    def _help(self) -> None:
        width = max(len(f"{c.name} {c.usage}") for c in COMMANDS)
        lines = [f"  {f'{c.name} {c.usage}'.ljust(width)}  {c.help}" for c in COMMANDS]
        self.renderer.note("commands (handled here, not sent to the model):\n" + "\n".join(lines))
        self.renderer.note(f"{KEYS_HELP}.", "dim")
        self.renderer.note(INPUT_HELP, "dim")

    def _refused(self, name: str, ack: JSONObject) -> bool:
        """Report a refused command; whether *ack* is a refusal."""
        if ack.get("status") != "rejected":
            return False
        code, error = ack.get("code"), ack.get("error") or ack.get("message") or "refused"
        if code == "unknown_command":
            self.renderer.note(f"! {name} is not supported by this server", "yellow")
        else:
            self.renderer.note(f"! {name} refused [{code}]: {error}", "red")
        return True

    async def _agent(self, name: str) -> None:
        if not name:
            agents = await self.load_agents()
            for agent in agents:
                about = agent.get("description")
                line = f"  {agent.get('name')}" + (f": {about}" if isinstance(about, str) else "")
                self.renderer.note(line)
            self.renderer.note("usage: /agent NAME", "dim")
            return
        ack = await self.send({"type": "switch_agent", "agent": name})
        if not self._refused("/agent", ack):
            self.renderer.note(f"[agent: {visible(name)}]", "cyan")

    async def _model(self, name: str) -> None:
        if not name:
            for line in await self._models():
                self.renderer.note(line)
            self.renderer.note("usage: /model NAME (or /model default)", "yellow")
            return
        model: JSON = None if name == "default" else name
        ack = await self.send({"type": "switch_model", "model": model})
        if not self._refused("/model", ack):
            shown = "the default" if model is None else visible(name)
            self.renderer.note(f"[model: {shown}]", "cyan")

    async def _models(self) -> list[str]:
        """The server's models (``GET /v1/models``) as lines to show; none from a server
        that does not list them (older than the endpoint)."""
        response = await self.http.get("/v1/models")
        if response.status_code == 404:
            return []
        response.raise_for_status()
        data: JSON = response.json()
        raw = data.get("models") if isinstance(data, dict) else None
        default = data.get("default") if isinstance(data, dict) else None
        lines = []
        for item in raw if isinstance(raw, list) else []:
            if isinstance(item, dict) and isinstance(name := item.get("name"), str):
                window = item.get("context_window")
                about = f"{window:,} tokens" if isinstance(window, int) else ""
                if name == default:
                    about += ", the server's"
                lines.append(f"  {visible(name)}" + (f" ({about.lstrip(', ')})" if about else ""))
        return lines

    async def _compact(self, instructions: str) -> Outcome:
        command: JSONObject = {"type": "compact"}
        if instructions:
            command["instructions"] = instructions
        ack = await self.send(command)
        if self._refused("/compact", ack):
            return Handled()
        turn_id = ack.get("turn_id")
        self.renderer.note("[compacting the session's history]", "dim")
        return StartedTurn(turn_id) if isinstance(turn_id, str) else Handled()

    async def _sessions(self) -> None:
        response = await self.http.get("/v1/sessions", params={"limit": 20})
        response.raise_for_status()
        data: JSON = response.json()
        raw = data.get("sessions") if isinstance(data, dict) else None
        sessions = [s for s in raw if isinstance(s, dict)] if isinstance(raw, list) else []
        if not sessions:
            self.renderer.note("no sessions")
        for session in sessions:  # the server lists them newest first
            mark = "*" if session.get("id") == self.session_id else " "
            title = session.get("title")
            shown = visible(title[:60]) if isinstance(title, str) else "(untitled)"
            self.renderer.note(
                f"{mark} {visible(str(session.get('id')))}  {_when(session.get('updated_at'))}  "
                f"{visible(str(session.get('current_agent')))}  {shown}"
            )
        self.renderer.note("(* this session; /session ID to continue another)", "dim")

    async def _session(self, session_id: str) -> Outcome:
        if not SESSION_ID.fullmatch(session_id):
            self.renderer.note("usage: /session ID (see /sessions)", "yellow")
            return Handled()
        if session_id == self.session_id:
            self.renderer.note(f"[already in session {session_id}]")
            return Handled()
        response = await self.http.get(f"/v1/sessions/{session_id}")
        if response.status_code == 404:
            self.renderer.note(f"! no session {visible(session_id)} (see /sessions)", "red")
            return Handled()
        try:  # any other refusal: stay here (switching would end the client)
            check_response(response, session_id)
        except (ChatError, ServerBusy) as error:
            shown = visible(str(error))
            self.renderer.note(f"! /session {visible(session_id)} failed: {shown}", "red")
            return Handled()
        return SwitchSession(session_id)

    async def _undo(self, arg: str) -> None:
        if self.journal is None:
            self.renderer.note("! /undo: this client keeps no journal here", "red")
            return
        if arg and not (arg.isdigit() and int(arg) > 0):
            self.renderer.note("usage: /undo [N] (N: how many turns, default 1)", "yellow")
            return
        try:
            reverted = await trio.to_thread.run_sync(self.journal.undo, int(arg or "1"))
        except UndoRefused as error:
            self.renderer.note(f"! /undo refused: {visible(str(error))}", "red")
            return
        except (OSError, OverflowError) as error:
            self.renderer.note(f"! /undo failed: {visible(str(error))}", "red")
            return
        finally:
            self._journal_notes()
        turns = plural(len(reverted.turns), "turn")
        shown = visible(", ".join(reverted.turns))
        self.renderer.note(f"[undid the file changes of {turns}: {shown}]")
        for line in reverted.lines:
            self.renderer.note(f"  {visible(line)}")

    def _journal_notes(self) -> None:
        """The journal's warnings (a dropped index entry, journaling turned off)."""
        if self.journal is not None:
            for text in self.journal.take_notes():
                self.renderer.note(visible(text), "yellow")

    async def _diff(self) -> None:
        if self.journal is None:
            self.renderer.note("! /diff: this client keeps no journal here", "red")
            return
        journal = self.journal
        git = in_git(journal.workspace.root)
        try:
            diffs = await trio.to_thread.run_sync(lambda: session_diff(journal, git=git))
        except (OSError, OverflowError) as error:
            self.renderer.note(f"! /diff failed: {visible(str(error))}", "red")
            return
        finally:
            self._journal_notes()
        if journal.off is not None:
            self.renderer.note(f"! /diff: the undo journal is off for this run: {journal.off}")
            return
        if not diffs:
            self.renderer.note("[the agent changed no files in this session (or /undo undid it)]")
            return
        if git:
            self.renderer.note(
                "[a git repository: the agent's changes this session, git diff style; "
                "`git diff` also shows changes made by others]",
                "dim",
            )
        for diff in diffs:
            self.renderer.diff(diff)

    async def _cost(self) -> None:
        # "estimated": calls cut mid-answer, counted by the server's estimate.
        totals = dict.fromkeys(
            ("calls", "prompt", "completion", "cached", "unpriced", "estimated"), 0
        )
        cost = 0.0
        after = 0
        while True:
            response = await self.http.get(
                f"/v1/sessions/{self.session_id}/events", params={"after": after, "limit": 1000}
            )
            response.raise_for_status()
            page: JSON = response.json()
            if not isinstance(page, dict):
                break
            events = page.get("events")
            for event in events if isinstance(events, list) else []:
                if not isinstance(event, dict) or event.get("type") != "usage":
                    continue
                totals["calls"] += 1
                totals["estimated"] += event.get("estimated") is True
                for key, field in (
                    ("prompt", "prompt_tokens"),
                    ("completion", "completion_tokens"),
                ):
                    value = event.get(field)
                    totals[key] += value if isinstance(value, int) else 0
                cached = event.get("cached_tokens")
                totals["cached"] += cached if isinstance(cached, int) else 0
                price = event.get("cost")
                if isinstance(price, int | float):
                    cost += price
                else:
                    totals["unpriced"] += 1
            next_after = page.get("next_after")
            if page.get("has_more") is not True or not isinstance(next_after, int):
                break
            after = next_after
        line = (
            f"[this session: {plural(totals['calls'], 'model call')}, "
            f"tokens {totals['prompt']} in ({totals['cached']} cached) / "
            f"{totals['completion']} out"
        )
        priced = totals["calls"] - totals["unpriced"]
        line += f", ${cost:.4f}" if priced else ", cost unknown"
        if totals["unpriced"] and priced:
            line += f" ({plural(totals['unpriced'], 'call')} unpriced)"
        if totals["estimated"]:
            line += f" ({plural(totals['estimated'], 'call')} estimated: cut mid-answer)"
        self.renderer.note(line + "]")

    def _auto_approve(self, glob: str) -> None:
        if glob:
            self.decider.allow(glob)
        rules = [*(f"--auto-approve {g}" for g in self.decider.auto_approve)]
        rules += [f"/auto-approve {g}" for g in self.decider.session_globs]
        if self.decider.yes:
            rules.append("--yes (everything)")
        if glob:
            self.renderer.note(
                f"[auto-approving tools matching {visible(glob)} for the rest of this run]", "cyan"
            )
        else:
            self.renderer.note("usage: /auto-approve PATTERN (a tool-name glob, e.g. read_*)")
        self.renderer.note(f"  rules now: {', '.join(rules) or 'none (every request asks)'}")


def _when(value: JSON) -> str:
    if not isinstance(value, int | float):
        return "?"
    try:
        return datetime.datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M")
    except (OverflowError, OSError, ValueError):  # out of range, or NaN
        return "?"


__all__ = [
    "COMMANDS",
    "COMMAND_NAMES",
    "Handled",
    "Outcome",
    "Parsed",
    "Quit",
    "SlashCommand",
    "SlashCommands",
    "StartedTurn",
    "SwitchSession",
    "message_text",
    "parse",
    "session_diff",
]
