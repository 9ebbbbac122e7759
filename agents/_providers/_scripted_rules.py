"""The scripted model's rules: from a request to the reply it gets (no I/O, no pacing).

The rules themselves are documented (a public contract) in ``_scripted.py``'s
docstring; this module carries them out, as a :class:`Reply` (text, tool calls,
and the gate its stream holds on, if any) that the model then streams. Separate
from the model so the rule table and its reply builders read as one piece,
apart from the streaming and the gates' state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import attrs
from attrs import frozen

from sessions import JSON, JSONObject, dumps

from .._core._model import SUBTASK_MARKER, ChatMessage, ModelRequest, ToolCallRequest
from .._core._modes import match_keyword
from .._core._state import FORKED, QUESTION_EXPIRED, TOOL_EXPIRED
from ._scripted_gates import Gates, Hold

MAX_STREAM_WORDS = 100_000

_F = re.IGNORECASE | re.DOTALL
_TWO_CREATES = re.compile(r"create (\S+) with (.+?) and create (\S+) with (.+)", _F)
# The words people put before a path ("read the file a.txt", "create a new file
# named b.md with ..."): a first message in the demo should not read "the".
_NOUN = r"(?:(?:the|a|an|this|that|my)\s+)?(?:(?:new\s+)?(?:file|folder|directory|dir)\s+)?"
_NOUN += r"(?:(?:named|called)\s+)?"
# A path ends before the sentence's punctuation ("read a.txt." reads a.txt).
_PATH = r"(\S+?)[.,;:!?]*"
_REST = r"(?:\s.*)?"
# "list", "list src", "list the files", "list all files in src/app".
_LIST = r"list(?:\s+(?:(?:all|the)\s+)*(?:files?|everything)\b)?"
_LIST += rf"(?:\s+(?:(?:in|of|under)\s+)?{_NOUN}{_PATH})?{_REST}"
_CREATE = re.compile(rf"(?:create|write) {_NOUN}(\S+) with (.+)", _F)
_EDIT = re.compile(rf"edit {_NOUN}(\S+) replace (.+?) with (.+)", _F)
_FIRST_THEN = re.compile(r"first (.+?),? then (.+)", _F)
_STREAM = re.compile(r"stream (\d+) words?\b.*", _F)
_CUT_OFF = re.compile(r"stream (\d+) words?,? then cut off(?: by (max_tokens|content_filter))?", _F)
_HOLD = re.compile(r"stream (\d+) words?,? then hold (\S+)(?:,? then (\d+) words?\b)?.*", _F)
_RELEASE = re.compile(r"release (\S+).*", _F)
_SWITCH = re.compile(r"switch to (\S+).*", _F)
_CALL = re.compile(r"call (\S+)(?:\s+(\{.*\}))?\s*", _F | re.DOTALL)
_ARGUMENT_RULES: Sequence[tuple[re.Pattern[str], str, tuple[str, ...]]] = (
    (re.compile(rf"read {_NOUN}{_PATH}{_REST}", _F), "read_file", ("path",)),
    (re.compile(_LIST, _F), "list_files", ("path",)),
    (re.compile(rf"search (.+?) in {_NOUN}{_PATH}", _F), "search_files", ("regex", "path")),
    (re.compile(rf"mkdir {_PATH}{_REST}", _F), "create_directory", ("path",)),
    (re.compile(rf"delete {_NOUN}{_PATH}{_REST}", _F), "delete_file", ("path",)),
    (
        re.compile(rf"move {_NOUN}{_PATH} to {_NOUN}{_PATH}{_REST}", _F),
        "move_file",
        ("source", "destination"),
    ),
    (re.compile(r"run (.+)", _F), "execute_command", ("command",)),
    (re.compile(r"ask (.+)", _F), "ask_followup_question", ("question",)),
    (_SWITCH, "switch_mode", ("mode",)),
    (re.compile(r"loop\b.*", _F), "read_file", ()),
)
_WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")
_INFORMATIVE = frozenset(
    {
        "read_file",
        "list_files",
        "search_files",
        "execute_command",
        "ask_followup_question",
        "new_task",
    }
)
# How the runtime words refusals and failures (tools, modes, policy, switches, a
# failed subtask), and the results it writes for calls nobody answered: rejected
# (an expired approval), cancelled (the turn ended), timed out, cut off by a fork.
_ERROR_PREFIXES = (
    *("error", "denied", "unknown", "too many", "subtask failed"),
    *("rejected", "cancelled", QUESTION_EXPIRED, TOOL_EXPIRED.lower(), FORKED),
)
_TARGET_KEYS = ("path", "source", "command", "mode", "question", "regex")
_PREFACE = {
    "read_file": "Reading {path}.",
    "write_file": "Writing {path}.",
    "apply_diff": "Editing {path}.",
    "list_files": "Listing {path}.",
    "search_files": "Searching {path}.",
    "create_directory": "Creating directory {path}.",
    "delete_file": "Deleting {path}.",
    "move_file": "Moving {source} to {destination}.",
    "execute_command": "Running {command}.",
    "ask_followup_question": "I have a question.",
    "switch_mode": "Handing over to {mode}.",
    "new_task": "Delegating to {mode}.",
    "attempt_completion": "Finishing.",
}

Call = tuple[str, JSONObject]


@frozen
class Reply:
    """What a request gets: text, then tool calls; the stream may hold on a gate."""

    text: str
    calls: tuple[Call, ...] = ()
    hold: Hold | None = None
    finish: str = ""  # the FinishDelta's reason; "": stop, or tool_calls


def stream_words(count: int) -> str:
    """The text of ``stream N words`` for N = *count* (words separated by one space)."""
    count = min(count, MAX_STREAM_WORDS)
    return " ".join(_WORDS[i % len(_WORDS)] for i in range(count))


def user_message(messages: Sequence[ChatMessage]) -> tuple[str, bool]:
    """The *message* the rules read, and whether it began with ``slow``."""
    text = next((m.content or "" for m in reversed(messages) if m.role == "user"), "").strip()
    head, _, rest = text.partition(" ")
    if head.lower() == "slow":
        return rest.strip(), True
    return text, False


def route(message: str) -> tuple[str, str]:
    """The scripted routing decision ``(agent, reason)`` for *message*."""
    if first := _FIRST_THEN.fullmatch(message):
        return "orchestrator", f"two steps ({first[1]!r}, then {first[2]!r}): delegating"
    if switch := _SWITCH.fullmatch(message):
        return switch[1].lower(), "the user asked for it"
    instruction = message
    if match := _CREATE.fullmatch(message) or _EDIT.fullmatch(message):
        instruction = message[: match.start(2)]
    agent, keyword = match_keyword(instruction)
    if keyword is None:
        return agent, "no planning, question or debugging keywords: a coding task"
    return agent, f"the request mentions {keyword!r}"


def _summary(transcript: str, system: str) -> str:
    lines: list[str] = []
    for block in transcript.split("\n\n"):
        if block.startswith("EARLIER SUMMARY:"):
            lines += [line for line in block.splitlines() if line.startswith("- ")]
        elif block.startswith("USER: "):
            lines.append(f"- the user said: {_clip(block[len('USER: ') :], 80)}")
    if limit := _WORD_LIMIT.search(system):
        words = int(limit[1])
        while len(lines) > 1 and sum(len(line.split()) for line in lines) > words:
            lines.pop(0)  # the oldest go first
    return "\n".join(["Summary:", *lines])


_WORD_LIMIT = re.compile(r"under (\d+) words")


def reply_to(request: ModelRequest, message: str, gates: Gates) -> Reply:
    """The scripted reply to *request*, whose user message is *message*."""
    if request.purpose == "compact":
        return Reply(
            _summary(request.messages[-1].content or "", request.messages[0].content or "")
        )
    if request.purpose == "route":
        agent, reason = route(message)
        return Reply(json.dumps({"agent": agent, "reason": reason}))
    messages = request.messages
    subtask = any(m.role == "system" and SUBTASK_MARKER in (m.content or "") for m in messages)
    calls = {c.id: c for m in messages for c in m.tool_calls}
    results: list[ChatMessage] = []
    for m in reversed(messages):
        if m.role != "tool":
            break
        results.insert(0, m)
    switched = all(
        (call := calls.get(r.tool_call_id or "")) is not None
        and call.name == "switch_mode"
        and not _result_text(call.name, r.content or "")[1]
        for r in results
    )
    if results and not switched:
        reply = _after_results(request, message, results, calls, gates)
    else:
        reply = _fresh(request, message, gates, handed_over=bool(results))
    if subtask and not reply.calls and request.tools:
        return attrs.evolve(reply, calls=(("attempt_completion", {"result": reply.text}),))
    return reply


def _fresh(
    request: ModelRequest, message: str, gates: Gates, *, handed_over: bool = False
) -> Reply:
    agent = request.agent
    calls: tuple[Call, ...] = ()
    first = _FIRST_THEN.fullmatch(message)
    if agent == "orchestrator" and first:
        calls = (("new_task", {"mode": route(first[1])[0], "message": first[1]}),)
    elif first:
        # Only the orchestrator delegates, and the session's agent is sticky: hand over.
        calls = (("switch_mode", {"mode": "orchestrator", "reason": route(message)[1]}),)
    elif agent == "orchestrator" and not _SWITCH.fullmatch(message):
        target, reason = route(message)
        calls = (("switch_mode", {"mode": target, "reason": reason}),)
    elif match := _TWO_CREATES.fullmatch(message):
        calls = (
            ("write_file", {"path": match[1], "content": match[2]}),
            ("write_file", {"path": match[3], "content": match[4]}),
        )
    elif match := _CREATE.fullmatch(message):
        calls = (("write_file", {"path": match[1], "content": match[2]}),)
    elif match := _EDIT.fullmatch(message):
        calls = (("apply_diff", {"path": match[1], "search": match[2], "replace": match[3]}),)
    elif match := _HOLD.fullmatch(message):
        return _hold(match, gates)
    elif match := _RELEASE.fullmatch(message):
        return _release(match[1], gates)
    elif match := _CUT_OFF.fullmatch(message):
        return Reply(stream_words(int(match[1])), finish=(match[2] or "max_tokens").lower())
    elif match := _STREAM.fullmatch(message):
        return Reply(stream_words(int(match[1])))
    elif match := _CALL.fullmatch(message):
        try:
            arguments = json.loads(match[2] or "{}")
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            return Reply(f"The arguments for {match[1]} must be a JSON object.")
        calls = ((match[1], arguments),)
    else:
        calls = _argument_rule(message)
    if calls and calls[0][0] == "switch_mode":
        to_mode = calls[0][1].get("mode")
        if to_mode == agent:
            return Reply(f"I am already the {agent} agent.")
        if handed_over:
            # A second hand-over of the same message could only bounce between agents.
            return Reply(
                f"I am the {agent} agent. This message was handed over to me already, "
                f"so I will not hand it on to {to_mode}."
            )
    if not calls:
        return Reply(
            f"I am the {agent} agent of the scripted model. You said: {_clip(message, 60)!r}. "
            "I only follow simple rules such as 'create FILE with TEXT', 'read FILE' and "
            "'run CMD'. Anything else gets this reply."
        )
    if not request.tools:
        names = " and ".join(name for name, _ in calls)
        return Reply(f"I am the {agent} agent. I would call {names} now, but no tools are offered.")
    return Reply(" ".join(_preface(name, args) for name, args in calls), calls)


def _hold(match: re.Match[str], gates: Gates) -> Reply:
    name = match[2]
    gate = gates.hold(name)
    if gate is None:
        return Reply(f"Too many open gates (limit {gates.limit}): not holding on {name}.")
    head = min(int(match[1]), MAX_STREAM_WORDS)
    tail = min(int(match[3] or 0), MAX_STREAM_WORDS - head)
    return Reply(stream_words(head + tail), hold=Hold(name, gate, head))


def _release(name: str, gates: Gates) -> Reply:
    count = gates.release(name)
    if count == 0:
        return Reply(f"No stream is held on {name}.")
    if count == 1:
        return Reply(f"Released {name}: 1 held stream continues.")
    return Reply(f"Released {name}: {count} held streams continue.")


def _argument_rule(message: str) -> tuple[Call, ...]:
    for pattern, name, keys in _ARGUMENT_RULES:
        if match := pattern.fullmatch(message):
            if not keys:
                return ((name, {"path": "loop.txt"}),)
            args: JSONObject = {key: match[i] or "." for i, key in enumerate(keys, 1)}
            if name == "switch_mode":
                args["mode"] = str(args["mode"]).lower()
                args["reason"] = "the user asked for it"
            return ((name, args),)
    return ()


def _after_results(
    request: ModelRequest,
    message: str,
    results: list[ChatMessage],
    calls: dict[str, ToolCallRequest],
    gates: Gates,
) -> Reply:
    if re.fullmatch(r"loop\b.*", message, _F):
        return _fresh(request, message, gates)
    first = _FIRST_THEN.fullmatch(message)
    if request.agent == "orchestrator" and first:
        start = max(i for i, m in enumerate(request.messages) if m.role == "user")
        tasks = [c for m in request.messages[start:] for c in m.tool_calls if c.name == "new_task"]
        if len(tasks) < 2:
            step = first[len(tasks) + 1]
            args: JSONObject = {"mode": route(step)[0], "message": step}
            return Reply(_preface("new_task", args), (("new_task", args),))
        answers = {m.tool_call_id: m.content or "" for m in request.messages if m.role == "tool"}
        parts = []
        for i, task in enumerate(tasks[:2], 1):
            text = _result_text("new_task", answers.get(task.id, ""))[0]
            parts.append(f"Step {i} ({_target(task)}): {_clip(text, 200).rstrip('.')}")
        summary = "Both steps are done. " + "; ".join(parts)
        return Reply("Finishing.", (("attempt_completion", {"result": summary}),))
    lines = [
        _describe(calls.get(r.tool_call_id or ""), r.content or "").rstrip(".") for r in results
    ]
    return Reply("Done: " + "; ".join(lines) + ".")


def _describe(call: ToolCallRequest | None, content: str) -> str:
    name = call.name if call is not None else "tool"
    subject = f"{name} {_target(call)}".rstrip() if call is not None else name
    text, failed = _result_text(name, content)
    index = text.lower().find("rejected by user")
    if index >= 0:
        return f"{subject} was {text[index:]}"
    if failed:
        return f"{subject} failed: {_clip(text, 200)}"
    if name in _INFORMATIVE and text:
        return f"{subject} succeeded ({_clip(text, 80)})"
    return f"{subject} succeeded"


def _result_text(name: str, content: str) -> tuple[str, bool]:
    """``(readable text, is_error)`` of a tool result's content."""
    text = content
    try:
        value: JSON = json.loads(content)
    except ValueError:
        value = None
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict):
        error = value.get("error")
        if error is not None:
            return (error if isinstance(error, str) else dumps(error)), True
        if value.get("ok") is False:
            return content, True
    lowered = text.lower()
    failed = lowered.startswith((f"{name}:", *_ERROR_PREFIXES)) or (
        re.search(r"\bmay (not|only)\b", lowered) is not None
    )
    return text, failed


def _target(call: ToolCallRequest | None) -> str:
    try:
        args: JSON = json.loads(call.arguments) if call is not None else None
    except ValueError:
        return ""
    if isinstance(args, dict):
        for key in _TARGET_KEYS:
            if isinstance(value := args.get(key), str):
                return _clip(value, 60)
    return ""


def _preface(name: str, args: JSONObject) -> str:
    shown = {key: "the workspace root" if value == "." else value for key, value in args.items()}
    return _PREFACE.get(name, "Calling {name}.").format_map({"name": name, **shown})


def _clip(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
