"""Terminal rendering for the chat client: streamed text, agents, subtasks, tools, turn ends.

Colour (ANSI) is added only when the output is a terminal and ``NO_COLOR`` is
unset, so piped output stays suitable for scripts. Everything else that reaches
the terminal goes through :mod:`._text` first: text from the server, the model,
files or commands never carries a control character to the terminal (only the
styles this module adds do).
Events inside a delegated subtask (payload ``subtask_id``) are indented one level
per nesting depth. Token usage is summed per turn and shown on the turn's end line.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Final, TextIO

from agents import TOOLS, decode_event
from agents.events import (
    AgentSwitched,
    ApprovalRequested,
    ApprovalResolved,
    AssistantMessage,
    ErrorEvent,
    QuestionAnswered,
    QuestionAsked,
    SubtaskEnded,
    SubtaskStarted,
    TextDeltaEvent,
    ToolCallEvent,
    ToolResultEvent,
    ToolStarted,
    TurnEnded,
    TurnStarted,
    UsageEvent,
    UserMessage,
)
from sessions import JSON, JSONObject

from ._text import plural, visible, visible_block

ENVELOPE: Final = frozenset({"seq", "session_id", "type", "ts", "turn_id"})
INDENT: Final = "    "
RETRY_INTERACTIVE: Final = "send the message again to retry"
_BLANKS: Final = re.compile(r"[ \t\n]+")

_RESET = "\x1b[0m"
_CODES: Final = {
    "dim": "\x1b[2m",
    "bold": "\x1b[1m",
    "red": "\x1b[31m",
    "green": "\x1b[32m",
    "yellow": "\x1b[33m",
    "cyan": "\x1b[36m",
}
_DECISIONS: Final = {
    "approve": "approved",
    "edit": "approved with edited arguments",
    "reject": "rejected",
    "respond": "answered without running",
    "expire": "expired",
    "cancel": "cancelled",
}


def use_color(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """Whether to colour *stream*: a terminal, ``NO_COLOR`` unset, ``TERM`` not dumb."""
    env = os.environ if env is None else env
    if "NO_COLOR" in env or env.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def clip(text: str, limit: int = 120) -> str:
    """*text* on one line, at most about *limit* characters.

    Runs of spaces, tabs and newlines become one space; any other control
    character (a lone CR included) is escaped, not hidden.
    """
    flat = visible(_BLANKS.sub(" ", text.replace("\r\n", "\n")).strip(" "))
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def describe_call(name: str, args: JSONObject) -> str:
    """A one-line human description of tool call *name* with *args*."""

    def arg(key: str) -> str:
        value = args.get(key)
        return visible(value) if isinstance(value, str) else ""

    match name:
        case "write_file":
            content = args.get("content")
            size = len(content.encode()) if isinstance(content, str) else 0
            return f"write_file {arg('path')} ({plural(size, 'byte')})"
        case "read_file":
            start, end = args.get("start_line"), args.get("end_line")
            span = f" lines {start or 1}-{end or 'end'}" if start or end else ""
            return f"read_file {arg('path')}{span}"
        case "list_files":
            return f"list_files {arg('path')}" + (" (recursive)" if args.get("recursive") else "")
        case "search_files":
            pattern = f" ({arg('file_pattern')})" if arg("file_pattern") else ""
            return f"search_files /{arg('regex')}/ in {arg('path')}{pattern}"
        case "move_file":
            return f"move_file {arg('source')} -> {arg('destination')}"
        case "execute_command":
            where = f" in {arg('cwd')}" if arg("cwd") else ""
            command = args.get("command")
            shown = clip(command if isinstance(command, str) else "", 200)
            return f"execute_command `{shown}`{where}"
        case _:
            target = arg("path") or clip(json.dumps(args), 100)
            return f"{visible(name)} {target}"


class Renderer:
    """Writes durable events and client notes to *out* as readable text."""

    def __init__(
        self, out: TextIO, *, color: bool = False, retry_hint: str = RETRY_INTERACTIVE
    ) -> None:
        self.out = out
        self.color = color
        self.retry_hint = retry_hint
        self._stream: str | None = None  # message_id whose text is being streamed
        self._streamed: set[str] = set()
        self._subtasks: dict[str, int] = {}
        self._open: list[str] = []
        self._agent: dict[str | None, str] = {}
        self._usage: dict[str, tuple[int, int]] = {}
        # Messages typed at our own prompt: already on screen, so not echoed again.
        self.typed: list[str] = []
        self._calls: dict[str, str] = {}  # call_id -> tool name
        self._asked: set[str] = set()  # call_ids a person was (or is being) asked about
        self._session_allowed: set[str] = set()  # tools approved "for this session"

    def style(self, text: str, *styles: str) -> str:
        if not self.color or not styles:
            return text
        return "".join(_CODES[s] for s in styles) + text + _RESET

    # -- low level --------------------------------------------------------------

    def end_stream(self) -> None:
        """Finish a streamed line, so the next output starts on a fresh line."""
        if self._stream is not None:
            self._stream = None
            self._write("\n")

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def lines(self, text: str, depth: int = 0, *styles: str) -> None:
        """*text* as whole lines, indented *depth* levels."""
        self.end_stream()
        prefix = INDENT * depth
        shown = visible_block(text).split("\n")
        self._write("".join(prefix + self.style(line, *styles) + "\n" for line in shown))

    def note(self, text: str, *styles: str) -> None:
        """A message from the client itself (connection state, decisions)."""
        self.lines(text, 0, *styles)

    def prompt(self, text: str) -> None:
        """*text* without a newline, for the user to answer on the same line."""
        self.end_stream()
        self._write(self.style(visible(text), "bold"))

    def diff(self, text: str, depth: int = 0) -> None:
        """A unified diff, additions green and removals red on a terminal."""
        self.end_stream()
        prefix = INDENT * depth + "  "
        out = []
        for line in visible_block(text).split("\n"):
            if line.startswith(("+++", "---")):
                styled = self.style(line, "bold")
            elif line.startswith("+"):
                styled = self.style(line, "green")
            elif line.startswith("-"):
                styled = self.style(line, "red")
            elif line.startswith("@@"):
                styled = self.style(line, "cyan")
            else:
                styled = line
            out.append(prefix + styled + "\n")
        self._write("".join(out))

    # -- events -------------------------------------------------------------------

    def depth(self, event: JSONObject) -> int:
        """How deeply *event* is nested in subtasks (0: the turn itself)."""
        subtask = event.get("subtask_id")
        if not isinstance(subtask, str):
            return 0
        if event.get("type") == "subtask.started":
            return len(self._open)
        return self._subtasks.get(subtask, 1)

    def event(self, event: JSONObject) -> None:
        """Render one durable event (an envelope with ``seq`` and ``type``)."""
        kind = event.get("type")
        payload = {k: v for k, v in event.items() if k not in ENVELOPE}
        try:
            decoded = decode_event(str(kind), payload)
        except ValueError:
            self.lines(f"[{clip(str(kind))}] {clip(json.dumps(payload), 200)}", 0, "dim")
            return
        turn = event.get("turn_id")
        turn_id = turn if isinstance(turn, str) else ""
        depth = self.depth(event)
        sub = event.get("subtask_id")
        scope = sub if isinstance(sub, str) else None
        match decoded:
            case UserMessage():
                if decoded.content in self.typed:
                    self.typed.remove(decoded.content)
                else:
                    self.lines(f"you> {decoded.content}", depth, "bold")
            case TurnStarted():
                self._agent[None] = decoded.agent
                self._usage[turn_id] = (0, 0)
                self.lines(f"[turn started: {decoded.agent}]", depth, "dim")
            case AgentSwitched():
                self._agent[scope] = decoded.to_agent
                line = f"[agent {decoded.from_agent} -> {decoded.to_agent}: {decoded.reason}]"
                self.lines(line, depth, "cyan")
            case TextDeltaEvent():
                self._delta(decoded, depth, self._agent.get(scope, "agent"))
            case AssistantMessage():
                self._calls.update((c.call_id, c.name) for c in decoded.tool_calls)
                self._message(decoded, depth)
            case ToolCallEvent():
                line = f"> {describe_call(decoded.name, decoded.arguments)}"
                self.lines(line + self._decided_by_rule(decoded), depth, "cyan")
            case ToolStarted():
                # Runs on the server (an MCP tool): shown, never executed here.
                line = f"> {describe_call(decoded.name, decoded.arguments)}"
                self.lines(f"{line} (on the server: MCP {visible(decoded.server)})", depth, "cyan")
            case ApprovalRequested():
                self._asked.add(decoded.call_id)
                self._calls[decoded.call_id] = decoded.name
                line = f"? approval needed: {describe_call(decoded.name, decoded.arguments)}"
                self.lines(f"{line} [{decoded.rule}]", depth, "yellow")
            case ApprovalResolved():
                tool = self._calls.get(decoded.call_id)
                remembered = event.get("remember") == "session"
                if remembered and tool is not None and decoded.decision in ("approve", "edit"):
                    self._session_allowed.add(tool)
                self.lines(_resolved(decoded), depth, "yellow")
            case ToolResultEvent():
                self._result(decoded, depth)
            case QuestionAsked():
                self.lines(f"? question: {decoded.text}", depth, "yellow")
                for number, option in enumerate(decoded.options or (), 1):
                    self.lines(f"  {number}) {option}", depth)
            case QuestionAnswered():
                self.lines(f"answer: {decoded.text}", depth, "dim")
            case SubtaskStarted():
                self._subtasks[decoded.subtask_id] = len(self._open) + 1
                self._open.append(decoded.subtask_id)
                self._agent[decoded.subtask_id] = decoded.agent
                self.lines(f"+ subtask ({decoded.agent}): {clip(decoded.message)}", depth, "cyan")
            case SubtaskEnded():
                level = max(self._subtasks.get(decoded.subtask_id, 1) - 1, 0)
                if decoded.subtask_id in self._open:
                    self._open.remove(decoded.subtask_id)
                status = "done" if decoded.ok else "failed"
                summary = f": {clip(decoded.summary)}" if decoded.summary else ""
                self.lines(f"+ subtask {status}{summary}", level, "cyan")
            case UsageEvent():
                prompt, completion = self._usage.get(turn_id, (0, 0))
                total = (prompt + decoded.prompt_tokens, completion + decoded.completion_tokens)
                self._usage[turn_id] = total
            case ErrorEvent():
                again = f" (temporary: {self.retry_hint})" if decoded.retryable else ""
                self.lines(f"! error [{decoded.code}]: {decoded.message}{again}", depth, "red")
            case TurnEnded():
                self._turn_ended(decoded, turn_id, depth)
            case _ if kind == "model.switched":
                to = payload.get("to")
                line = f"model switched to {to}" if isinstance(to, str) else "model back to default"
                self.lines(f"[{line}]", depth, "cyan")

    def _decided_by_rule(self, call: ToolCallEvent) -> str:
        """A note when no person was asked about a call a person would be asked about.

        The server sends a ``tool.call`` without an ``approval.requested`` when its
        policy allows the call: by a rule remembered for this session, or by a rule
        of the server's policy file (the defaults of reads and server tools are
        not worth a note).
        """
        tool = TOOLS.get(call.name)
        if call.call_id in self._asked or tool is None:
            return ""
        if call.name in self._session_allowed:
            return f" (auto-approved: session rule for {visible(call.name)})"
        if tool.side == "ide" and tool.group != "read":  # the policy's default is to ask
            return " (auto-approved: a rule of the server's approval policy)"
        return ""

    def _delta(self, delta: TextDeltaEvent, depth: int, agent: str) -> None:
        prefix = INDENT * depth
        if self._stream != delta.message_id:
            self.end_stream()
            self._stream = delta.message_id
            self._streamed.add(delta.message_id)
            self._write(prefix + self.style(f"{visible(agent)}:", "bold") + " ")
            text = delta.text.lstrip(" ")
        else:
            text = delta.text
        self._write(visible_block(text).replace("\n", "\n" + prefix))

    def _message(self, message: AssistantMessage, depth: int) -> None:
        if message.message_id not in self._streamed and message.content:
            self.lines(f"{message.agent}: {message.content}", depth)
        self._streamed.discard(message.message_id)
        if self._stream == message.message_id:
            self.end_stream()
        if message.truncated:
            self.lines("[message truncated]", depth, "dim")

    def _result(self, result: ToolResultEvent, depth: int) -> None:
        name = self._calls.pop(result.call_id, None)
        if result.ok and (name == "new_task" or (name == "attempt_completion" and depth)):
            return  # the subtask.ended line already said it
        text = _command_summary(result.summary) or result.summary.strip() or "(empty)"
        shown = text.split("\n")
        if len(shown) > 4:
            shown = [*shown[:4], f"... ({plural(len(shown) - 4, 'more line')})"]
        body = "\n  ".join(clip(line, 200) for line in shown)
        if result.ok:
            self.lines(f"= ok: {body}", depth, "green")
        else:
            self.lines(f"= failed: {body}", depth, "red")

    def _turn_ended(self, ended: TurnEnded, turn_id: str, depth: int) -> None:
        prompt, completion = self._usage.pop(turn_id, (0, 0))
        if ended.usage is not None:  # the server's totals: subtasks and compactions too
            prompt, completion = ended.usage.prompt_tokens, ended.usage.completion_tokens
        tokens = f", tokens {prompt} in / {completion} out" if prompt or completion else ""
        if ended.usage is not None and ended.usage.cost is not None:
            tokens += f", ${ended.usage.cost:.4f}"
        if ended.context_tokens is not None and ended.context_window:
            tokens += f", ctx {min(ended.context_tokens * 100 // ended.context_window, 999)}%"
        color = "green" if ended.reason == "completed" else "red"
        self.lines(f"== turn {ended.reason}{tokens} ==", depth, color, "bold")


def _command_summary(summary: str) -> str | None:
    """``exit N`` and the output of an ``execute_command`` result, if *summary* is one."""
    try:
        value: JSON = json.loads(summary)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("exit_code"), int):
        return None
    output = value.get("output")
    text = output.rstrip() if isinstance(output, str) else ""
    return f"exit {value['exit_code']}" + (f"\n{text}" if text else "")


def _resolved(resolved: ApprovalResolved) -> str:
    decision = _DECISIONS.get(resolved.decision, resolved.decision)
    line = f"approval {decision} (by {resolved.by})"
    if resolved.feedback:
        line += f": {resolved.feedback}"
    return line
