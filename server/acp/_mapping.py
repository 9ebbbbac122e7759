"""Runtime events (docs/protocol.md §6) → ACP ``session/update`` payloads, and turn ends →
stop reasons. Pure: no I/O, no clock; the tables below are the mapping docs/acp.md shows.

A session's updates come from one :class:`Translator` fed every event in seq order.
It is a fold over the log, with two modes:

- *live*: text arrives as ``text.delta`` (streamed as ``agent_message_chunk``); the
  final ``message`` repeats it and is only used for its tool calls (or for text
  that had no delta). The user's own prompt is not echoed: the client sent it.
- *replay* (``session/load``): deltas are skipped, each ``message`` gives its whole
  text at once and ``user.message`` becomes ``user_message_chunk``; errors, which
  live reach the client as the prompt's JSON-RPC error, become text. A log read
  in the middle of a reply has its deltas but not yet its ``message``:
  :meth:`Translator.end_replay` sends that text and goes live, where the
  ``message`` then does not repeat it (so the reply is whole across a load, with
  no gap and no duplicate).

Tool calls: the assistant ``message`` that makes a call announces it
(``tool_call``, ``pending``, with its kind, title, locations and a preview of an
edit as diff content), ``tool.call`` (the IDE must run it) moves it to
``in_progress``, ``subtask.started`` does the same for ``new_task`` with the
subtask's agent in its title, and ``tool.result`` ends it ``completed`` or
``failed``. The content of that last update is what the executor noted
(:meth:`Translator.note_content`: the real diff of an edit, the terminal of a
command), else the result's text. Text of a subtask's agent is reported as
``agent_thought_chunk``: it is the delegate's work, not the answer.

Each ``turn.ended`` gives a ``usage_update`` (the context meter and the session's
cost so far, ``_usage.py``), once a turn has said how full its context is.
Compactions become ``compaction_update`` for a client that takes them
(``_compaction.py``), before the update of the event that ends them.
"""

from __future__ import annotations

import os.path
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

from sessions import JSON, JSONObject

from ._compaction import CompactionUpdates
from ._fields import str_field
from ._jsonrpc import INTERNAL_ERROR, RpcError
from ._link import SessionInfo
from ._options import SessionOptions
from ._usage import UsageMeter

# Tool name → ACP ToolKind (anything else is "other").
TOOL_KINDS: Final[Mapping[str, str]] = {
    "read_file": "read",
    "list_files": "read",
    "write_file": "edit",
    "apply_diff": "edit",
    "create_directory": "edit",
    "execute_command": "execute",
    "search_files": "search",
    "delete_file": "delete",
    "move_file": "move",
    "switch_mode": "switch_mode",
}

# turn.ended reason → ACP StopReason (``error`` has none: the prompt fails instead).
STOP_REASONS: Final[Mapping[str, str]] = {
    "completed": "end_turn",
    "max_steps": "max_turn_requests",
    "cancelled": "cancelled",
    "interrupted": "cancelled",
}

_TITLE_LIMIT: Final = 120


def tool_kind(name: str) -> str:
    return TOOL_KINDS.get(name, "other")


# A completed turn whose last answer the provider cut off (message.cut_off).
CUT_OFF_STOP_REASONS: Final[Mapping[str, str]] = {
    "max_tokens": "max_tokens",
    "content_filter": "refusal",
}


def stop_reason(reason: str, cut_off: str | None = None) -> str | None:
    """The ACP stop reason for a ``turn.ended`` *reason*; ``None`` for ``error``.

    *cut_off* is the ``cut_off`` of the turn's last answer: a turn that completed
    on an answer cut at the output limit, or by a filter, says so to the editor.
    """
    if reason == "completed" and cut_off is not None:
        return CUT_OFF_STOP_REASONS.get(cut_off, "end_turn")
    return STOP_REASONS.get(reason)


def turn_error(error: JSONObject | None) -> RpcError:
    """What a prompt whose turn ended with ``error`` is answered with.

    *error* is the turn's last ``error`` event (its ``code``, ``message`` and
    ``retryable`` go into ``data``), if it had one.
    """
    if error is None:
        return RpcError(INTERNAL_ERROR, "the turn failed", {"code": "internal"})
    message = str_field(error, "message") or "the turn failed"
    data: JSONObject = {"code": str_field(error, "code") or "internal", "message": message}
    if isinstance(error.get("retryable"), bool):
        data["retryable"] = error["retryable"]
    return RpcError(INTERNAL_ERROR, message, data)


def _clip(text: str, limit: int = _TITLE_LIMIT) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def tool_title(name: str, args: Mapping[str, JSON]) -> str:
    """A one-line title for a call, as an editor shows it above the call."""
    path = str_field(args, "path")
    match name:
        case "read_file":
            start, end = args.get("start_line"), args.get("end_line")
            lines = f" (lines {start or 1}-{end or 'end'})" if start or end else ""
            return _clip(f"Read {path}{lines}")
        case "write_file":
            return _clip(f"Write {path}")
        case "apply_diff":
            return _clip(f"Edit {path}")
        case "list_files":
            return _clip(f"List {path or '.'}")
        case "search_files":
            return _clip(f"Search {str_field(args, 'regex')!r} in {path or '.'}")
        case "create_directory":
            return _clip(f"Create directory {path}")
        case "delete_file":
            return _clip(f"Delete {path}")
        case "move_file":
            return _clip(f"Move {str_field(args, 'source')} to {str_field(args, 'destination')}")
        case "execute_command":
            return _clip(f"Run {str_field(args, 'command')}")
        case "switch_mode":
            return _clip(f"Switch to {str_field(args, 'mode')}")
        case "new_task":
            return _clip(f"Delegate to {str_field(args, 'mode')}: {str_field(args, 'message')}")
        case "attempt_completion":
            return "Complete the task"
        case "ask_followup_question":
            return _clip(f"Ask: {str_field(args, 'question')}")
        case _:
            return _clip(name)


def absolute(cwd: str, path: str) -> str:
    """*path* (workspace-relative, as tool arguments give it) as the absolute path ACP wants.

    For display and for naming files to the client; the executor confines paths
    to the workspace before any request uses one.
    """
    return os.path.normpath(os.path.join(cwd, path.replace("\\", "/")))


def tool_locations(name: str, args: Mapping[str, JSON], cwd: str) -> list[JSON]:
    """The files a call touches (an editor can follow them)."""
    keys = ("source", "destination") if name == "move_file" else ("path",)
    out: list[JSON] = []
    for key in keys:
        path = str_field(args, key)
        if path and name in TOOL_KINDS and name != "switch_mode":
            location: JSONObject = {"path": absolute(cwd, path)}
            start = args.get("start_line")
            if name == "read_file" and type(start) is int:
                location["line"] = start
            out.append(location)
    return out


def text_content(text: str) -> JSONObject:
    """Tool call content showing *text*."""
    return {"type": "content", "content": {"type": "text", "text": text}}


def diff_content(path: str, old: str | None, new: str) -> JSONObject:
    """Tool call content showing an edit of *path* (absolute); *old* ``None``: a new file."""
    return {"type": "diff", "path": path, "oldText": old, "newText": new}


def preview_content(name: str, args: Mapping[str, JSON], cwd: str) -> list[JSON]:
    """What an edit will change, from its arguments alone (before anything is read).

    ``write_file`` shows the new content; ``apply_diff`` its search and replace
    text. The finished call shows the real diff (:meth:`Translator.note_content`).
    """
    path = str_field(args, "path")
    if name == "write_file" and path:
        return [diff_content(absolute(cwd, path), None, str_field(args, "content"))]
    if name == "apply_diff" and path:
        return [
            diff_content(absolute(cwd, path), str_field(args, "search"), str_field(args, "replace"))
        ]
    return []


def tool_call(call_id: str, name: str, args: JSONObject, cwd: str, status: str) -> JSONObject:
    """The fields ACP's ToolCall / ToolCallUpdate share for a call of *name*."""
    return {
        "toolCallId": call_id,
        "title": tool_title(name, args),
        "kind": tool_kind(name),
        "status": status,
        "rawInput": args,
        "content": preview_content(name, args, cwd),
        "locations": tool_locations(name, args, cwd),
    }


def chunk(kind: str, text: str) -> JSONObject:
    """A ``user_message_chunk`` / ``agent_message_chunk`` / ``agent_thought_chunk`` update."""
    return {"sessionUpdate": kind, "content": {"type": "text", "text": text}}


def iso_time(ts: float) -> str:
    """A Unix time as ACP writes times (ISO 8601, UTC, ``Z``)."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def session_info_update(info: SessionInfo) -> JSONObject:
    """The ``session_info_update`` of *info*: its title (none yet: left out) and last change."""
    update: JSONObject = {"sessionUpdate": "session_info_update"}
    if info.title:
        update["title"] = info.title
    update["updatedAt"] = iso_time(info.updated_at)
    return update


DELETED_NOTICE: Final = "\n[this session was deleted (by another client); start a new one]\n"


class Translator:
    """The ``session/update`` payloads of one session's events (see the module docstring).

    *cwd* is the session's workspace (absolute), for the paths ACP shows. With
    *compaction* (the client advertised ``session.compaction``) compactions are
    shown too (``_compaction.py``). *options* are the session's selectors, which
    agent and model switches update (``_options.py``; without them an agent
    switch is a mode update alone).
    """

    def __init__(
        self,
        cwd: str,
        *,
        replay: bool = False,
        compaction: bool = False,
        options: SessionOptions | None = None,
    ) -> None:
        self.cwd = cwd
        self.replay = replay
        self.compaction = compaction
        self.options = options
        self._compactions = CompactionUpdates() if compaction else None
        self._streamed: set[str] = set()  # message ids whose text went out as deltas
        # replay: the deltas of messages not committed yet (id -> chunk kind, pieces),
        # joined once when sent (a long reply has thousands of deltas)
        self._unsent: dict[str, tuple[str, list[str]]] = {}
        self._calls: dict[str, tuple[str, JSONObject]] = {}  # open calls: name, arguments
        self._content: dict[str, list[JSON]] = {}
        self._meter = UsageMeter()

    def note_content(self, call_id: str, content: Sequence[JSON]) -> None:
        """Show *content* (instead of the result's text) when *call_id* finishes."""
        self._content[call_id] = list(content)

    def call(self, call_id: str) -> tuple[str, JSONObject] | None:
        """Name and arguments of an open call this translator has seen announced."""
        return self._calls.get(call_id)

    def feed(self, event: Mapping[str, JSON]) -> list[JSONObject]:
        """The updates *event* makes (often none)."""
        if self._compactions is None:
            return self._feed(event)
        shown = self._compactions.feed(event)
        return shown + self._feed(event) if shown else self._feed(event)

    def _feed(self, event: Mapping[str, JSON]) -> list[JSONObject]:
        kind = event.get("type")
        text_kind = "agent_thought_chunk" if event.get("subtask_id") else "agent_message_chunk"
        match kind:
            case "user.message" if self.replay:
                return [chunk("user_message_chunk", str_field(event, "content"))]
            case "text.delta" if not self.replay:
                self._streamed.add(str_field(event, "message_id"))
                text = str_field(event, "text")
                return [chunk(text_kind, text)] if text else []
            case "text.delta":  # kept in case the replay ends before its message
                message_id = str_field(event, "message_id")
                self._unsent.setdefault(message_id, (text_kind, []))[1].append(
                    str_field(event, "text")
                )
            case "message":
                return self._message(event, text_kind)
            case "tool.call" | "tool.started":  # tool.started: the runtime runs it (MCP)
                return self._started(event)
            case "subtask.started":
                return self._subtask(event)
            case "tool.result":
                return self._finished(event)
            case "agent.switched" | "model.switched" if self.options is not None:
                return self.options.feed(event)
            case "agent.switched":
                return [
                    {
                        "sessionUpdate": "current_mode_update",
                        "currentModeId": str_field(event, "to"),
                    }
                ]
            case "question.asked":
                return [chunk(text_kind, _question(event))]
            case "question.answered" if self.replay:
                return [chunk("user_message_chunk", str_field(event, "text"))]
            case "error" if self.replay:
                code, message = str_field(event, "code"), str_field(event, "message")
                return [chunk("agent_message_chunk", f"\n[error {code}: {message}]\n")]
            case "turn.ended":
                # A reply whose commit failed has deltas and no message: shown, as live.
                out = self._flush_unsent() if self.replay else []
                self._streamed.clear()
                self._calls.clear()
                self._content.clear()
                self._meter.turn_ended(event)
                return out if self.replay else out + self._usage()
            case "session.deleted":
                # ACP has no such notice; the editor would otherwise only see its
                # next prompt refused.
                return [chunk("agent_message_chunk", DELETED_NOTICE)]
        return []

    def end_replay(self) -> list[JSONObject]:
        """Go live after a replay; the updates of the text the log ends in the middle of.

        That is the text of a reply streamed (its deltas are in the log) but not
        committed as a ``message`` yet: it goes out now, and counts as streamed,
        so the ``message`` that comes live does not repeat it. Then the session's
        ``usage_update`` (its context meter and cost as the log leaves them), which
        a replay does not send turn by turn.
        """
        out = self._flush_unsent() + self._usage()
        self.replay = False
        return out

    def _usage(self) -> list[JSONObject]:
        # Live after every turn; on a replay once, at its end: the meter of the
        # session loaded, not of each turn it had.
        update = self._meter.update()
        return [] if update is None else [update]

    def _flush_unsent(self) -> list[JSONObject]:
        texts = ((kind, "".join(pieces)) for kind, pieces in self._unsent.values())
        out = [chunk(kind, text) for kind, text in texts if text]
        self._streamed.update(self._unsent)
        self._unsent.clear()
        return out

    def _message(self, event: Mapping[str, JSON], text_kind: str) -> list[JSONObject]:
        out: list[JSONObject] = []
        message_id, content = str_field(event, "message_id"), str_field(event, "content")
        self._unsent.pop(message_id, None)
        if content and (self.replay or message_id not in self._streamed):
            out.append(chunk(text_kind, content))
        self._streamed.discard(message_id)
        calls = event.get("tool_calls")
        for item in calls if isinstance(calls, list) else []:
            if not isinstance(item, dict):
                continue
            call_id, name, args = (
                str_field(item, "call_id"),
                str_field(item, "name"),
                item.get("arguments"),
            )
            if call_id and name:
                arguments = args if isinstance(args, dict) else {}
                self._calls[call_id] = (name, arguments)
                update = tool_call(call_id, name, arguments, self.cwd, "pending")
                out.append({"sessionUpdate": "tool_call", **update})
        return out

    def _started(self, event: Mapping[str, JSON]) -> list[JSONObject]:
        call_id = str_field(event, "call_id")
        if call_id in self._calls:
            return [
                {
                    "sessionUpdate": "tool_call_update",
                    "toolCallId": call_id,
                    "status": "in_progress",
                }
            ]
        # Announced before what we read (cannot happen with a whole log): announce it now.
        name, args = str_field(event, "name"), event.get("arguments")
        arguments = args if isinstance(args, dict) else {}
        self._calls[call_id] = (name, arguments)
        return [
            {
                "sessionUpdate": "tool_call",
                **tool_call(call_id, name, arguments, self.cwd, "in_progress"),
            }
        ]

    def _subtask(self, event: Mapping[str, JSON]) -> list[JSONObject]:
        call_id = str_field(event, "call_id")  # the new_task call the subtask answers
        if not call_id:
            return []
        title = _clip(f"Delegate to {str_field(event, 'agent')}: {str_field(event, 'message')}")
        return [
            {
                "sessionUpdate": "tool_call_update",
                "toolCallId": call_id,
                "status": "in_progress",
                "title": title,
            }
        ]

    def _finished(self, event: Mapping[str, JSON]) -> list[JSONObject]:
        call_id = str_field(event, "call_id")
        self._calls.pop(call_id, None)
        ok = event.get("ok") is True
        noted = self._content.pop(call_id, None)
        summary = str_field(event, "summary") or str_field(event, "content")
        content: list[JSON] = (
            noted if ok and noted is not None else ([text_content(summary)] if summary else [])
        )
        return [
            {
                "sessionUpdate": "tool_call_update",
                "toolCallId": call_id,
                "status": "completed" if ok else "failed",
                "content": content,
            }
        ]


def _question(event: Mapping[str, JSON]) -> str:
    text = str_field(event, "text")
    options = event.get("options")
    choices = [o for o in options if isinstance(o, str)] if isinstance(options, list) else []
    listed = "".join(f"\n- {choice}" for choice in choices)
    return f"\n{text}{listed}\n"
