"""Terminal rendering for the chat client: streamed text, agents, subtasks, tools, turn ends.

Colour (ANSI) is added only when the output is a terminal and ``NO_COLOR`` is
unset, so piped output stays suitable for scripts. Everything else that reaches
the terminal goes through :mod:`._text` first: text from the server, the model,
files or commands never carries a control character to the terminal (only the
styles this module adds do).

On a *live* terminal (a TTY whose ``TERM`` is not ``dumb``) there is more: a
status line (:mod:`._status`), the output of a command shown as it runs, and,
with colour, each streamed message replaced by its markdown rendering once the
final ``message`` arrives (:mod:`._markdown`); the stream is shown dim until then.
Tool output keeps its whitespace: it is cut by lines, never collapsed.
Events inside a delegated subtask (payload ``subtask_id``) are indented one level
per nesting depth. Token usage is summed per turn and shown on the turn's end line.
per nesting depth. Token usage is summed per turn and shown on the turn's end line.

Putting the text on the terminal (styles, whole lines, the status line, live
command output) is :mod:`._screen`; this module decides what each event says.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Final, TextIO

from agents import TOOLS, decode_event
from agents.events import (
    AgentEvent,
    AgentSwitched,
    ApprovalRequested,
    ApprovalResolved,
    AssistantMessage,
    ErrorEvent,
    QuestionAnswered,
    QuestionAsked,
    SessionDeleted,
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
from sessions import JSONObject

from ._describe import clip, command_summary, cut_line, describe_call
from ._markdown import Markdown, rows
from ._screen import INDENT, Screen, is_live, terminal_size, use_color
from ._status import activity
from ._text import plural, visible, visible_block

ENVELOPE: Final = frozenset({"seq", "session_id", "type", "ts", "turn_id"})
RETRY_INTERACTIVE: Final = "send the message again to retry"
RESULT_LINES: Final = 4  # lines of a tool result shown on the terminal
_ERASE_BELOW: Final = "\x1b[J"  # erase from the cursor to the end of the screen

_DECISIONS: Final = {
    "approve": "approved",
    "edit": "approved with edited arguments",
    "reject": "rejected",
    "respond": "answered without running",
    "expire": "expired",
    "cancel": "cancelled",
}


def terminal_renderer(out: TextIO, env: Mapping[str, str] | None = None) -> Renderer:
    """The renderer for *out*: colour, status line and markdown as far as *out* allows."""
    return Renderer(out, color=use_color(out, env), live=is_live(out, env))


class Renderer(Screen):
    """Writes durable events and client notes to *out* as readable text.

    *live*: *out* is a terminal that can rewrite lines (status line, live command
    output; with *color* also markdown). *size* gives its (columns, rows).
    """

    def __init__(
        self,
        out: TextIO,
        *,
        color: bool = False,
        retry_hint: str = RETRY_INTERACTIVE,
        live: bool = False,
        size: Callable[[], tuple[int, int]] = terminal_size,
    ) -> None:
        super().__init__(out, color=color, live=live, size=size)
        self.retry_hint = retry_hint
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
        if self.status is not None:
            self._track_status(decoded)
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
                self._command_depth = depth
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
            case SessionDeleted():
                self.lines("[this session was deleted]", depth, "red")
            case _ if kind == "model.switched":
                to = payload.get("to")
                line = f"model switched to {to}" if isinstance(to, str) else "model back to default"
                self.lines(f"[{line}]", depth, "cyan")

    def _track_status(self, event: AgentEvent) -> None:
        assert self.status is not None
        self.status.show(activity(event, self.status.label, describe_call))
        # A prompt for the human follows (maybe prompt_toolkit's, which is not ours to
        # pause): nothing may be drawn over it until the answer is in the log.
        if isinstance(event, ApprovalRequested | QuestionAsked):
            self.status.hold("asking")
        elif isinstance(event, ApprovalResolved | QuestionAnswered | TurnEnded):
            self.status.release("asking")

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
            label = f"{prefix}{visible(agent)}: "
            self._stream_text = label
            self._write(prefix + self.style(f"{visible(agent)}:", "bold") + " ")
            text = delta.text.lstrip(" ")
        else:
            text = delta.text
        shown = visible_block(text).replace("\n", "\n" + prefix)
        self._stream_text += shown
        # Dim until the markdown rendering replaces it: the raw form is a draft.
        self._write(self.style(shown, "dim") if self.markdown else shown)

    def _message(self, message: AssistantMessage, depth: int) -> None:
        streamed = message.message_id in self._streamed
        self._streamed.discard(message.message_id)
        if self.markdown and message.content.strip():
            # Streamed: replaced, if the raw copy is still whole on the screen.
            if not streamed or (self._stream == message.message_id and self._erase_stream()):
                self._markdown(message, depth)
        elif not streamed and message.content:
            self.lines(f"{message.agent}: {message.content}", depth)
        if self._stream == message.message_id:
            self.end_stream()
        if message.truncated:
            self.lines("[message truncated]", depth, "dim")
        elif message.cut_off is not None:
            why = visible(message.cut_off)
            self.lines(f"[answer cut off by the provider: {why}]", depth, "dim")

    def _erase_stream(self) -> bool:
        """Erase the open stream from the screen, if all of it is still there."""
        columns, height = self.size()
        taken = rows(self._stream_text, columns)
        if taken >= height:
            return False  # some of it scrolled off: it stays as streamed
        self._stream = None
        up = f"\x1b[{taken - 1}A" if taken > 1 else ""
        self._write("\r" + up + _ERASE_BELOW)
        return True

    def _markdown(self, message: AssistantMessage, depth: int) -> None:
        prefix = INDENT * depth
        width = self.size()[0] - len(prefix)
        rendered = Markdown(width=width).render(message.content).rstrip("\n").split("\n")
        self.lines(f"{message.agent}:", depth, "bold")
        self._write("".join(prefix + line + "\n" for line in rendered))

    def _result(self, result: ToolResultEvent, depth: int) -> None:
        name = self._calls.pop(result.call_id, None)
        if result.ok and (name == "new_task" or (name == "attempt_completion" and depth)):
            return  # the subtask.ended line already said it
        self._end_command_output()
        summary = result.summary.strip("\n") if result.summary.strip() else ""
        # From the full content: the summary is cut at 500 characters, which breaks
        # the JSON of all but the shortest command results.
        text = command_summary(result.content) or summary or "(empty)"
        shown = [cut_line(line) for line in text.replace("\r\n", "\n").split("\n")]
        if len(shown) > RESULT_LINES:
            more = f"... ({plural(len(shown) - RESULT_LINES, 'more line')})"
            shown = [*shown[:RESULT_LINES], more]
        body = "\n  ".join(shown)
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


def _resolved(resolved: ApprovalResolved) -> str:
    decision = _DECISIONS.get(resolved.decision, resolved.decision)
    line = f"approval {decision} (by {resolved.by})"
    if resolved.feedback:
        line += f": {resolved.feedback}"
    return line
