r"""The ``scripted`` model: a deterministic, offline :class:`ModelClient` (SPEC §5).

It lets every feature run without a network or keys. The same request always gives
the same deltas (except for the gate rules, whose replies depend on the gates open
in this :class:`ScriptedModel`, see **Gates** below): text in word-sized
:class:`TextDelta` chunks (each chunk is a word with its leading whitespace, so the
chunks join to the exact text), then the tool calls as :class:`ToolCallDelta`, then
:class:`UsageDelta` (prompt tokens estimated from characters, like the
runtime's own estimate; completion tokens are word counts) and :class:`FinishDelta`
(``"tool_calls"`` or ``"stop"``). With ``pace > 0`` it sleeps ``pace`` seconds
between consecutive text chunks and tool calls; a message starting with ``slow``
paces at least :data:`SLOW_PACE`.

Its rules are a public contract (tests and demos rely on them). The *message* is
the content of the last ``user`` message, stripped; a leading ``slow`` word is
removed first. Verbs are case-insensitive; FILE, DIR, A, B are single words; TEXT,
CMD, QUESTION run verbatim to the end of the message.

**Compaction** (``purpose="compact"``): the summary is ``Summary:`` followed by
one line per user message of the transcript it was given (``- the user said:
TEXT``, clipped to 80 characters), after the lines of any earlier summary, so
facts the user gave survive compactions; when the system prompt says ``under N
words``, the oldest lines are dropped until it fits.

**Routing** (``purpose="route"``): the answer is the JSON text
``{"agent": X, "reason": "..."}`` where X is ``orchestrator`` for
``first A then B``, MODE for ``switch to MODE``, and otherwise
:func:`route_by_keywords` of the message (for ``create``/``write``/``edit`` only
the words before ``with``/``replace``, because the content is not an instruction).

**A fresh message** (the history ends with the user message, or only with results
of successful ``switch_mode`` calls, so the agent switched to acts on it):

=================================================  ===========================================
message                                            reply
=================================================  ===========================================
agent ``orchestrator``: ``first A then B``         ``new_task{mode: route(A), message: A}``
any other agent: ``first A then B``                ``switch_mode{mode: orchestrator}``, which
                                                   then delegates (the agent is sticky, so
                                                   this works from any session)
agent ``orchestrator``: ``switch to MODE``         as for every agent (below)
agent ``orchestrator``: anything else              ``switch_mode{mode: route(msg), reason}``
``create A with X and create B with Y``            two ``write_file`` calls in one message
``create FILE with TEXT`` / ``write FILE with ..``  ``write_file{path, content: TEXT}``
``edit FILE replace A with B``                     ``apply_diff{path, search: A, replace: B}``
``read FILE``                                      ``read_file{path}``
``list DIR`` / ``list``                            ``list_files{path: DIR or "."}``
``search REGEX in DIR``                            ``search_files{path: DIR, regex}``
``mkdir DIR``                                      ``create_directory{path}``
``delete FILE``                                    ``delete_file{path}``
``move A to B``                                    ``move_file{source: A, destination: B}``
``run CMD``                                        ``execute_command{command: CMD}``
``ask QUESTION``                                   ``ask_followup_question{question}``
``switch to MODE``                                 ``switch_mode{mode}`` (text if already MODE)
``call TOOL {JSON}`` / ``call TOOL``                ``TOOL{JSON}`` (any tool name, e.g. an
                                                   MCP server's ``mcp__time__get_current_time``;
                                                   the JSON must be an object; absent: ``{}``)
``loop``                                           ``read_file{path: "loop.txt"}``, again after
                                                   every result (for max-steps tests)
``stream N words``                                 text of N words (N ≤ 100000), no tool call
``stream N words then hold GATE``                  text of N words, then the stream is held
                                                   until ``release GATE`` (see **Gates**)
``stream N words then hold GATE then M words``     the same, then M more words once released
``release GATE``                                   ``Released GATE: 1 held stream continues.``
                                                   (see **Gates**), no tool call
anything else                                      ≥ 3 sentences naming the agent, no tool call
=================================================  ===========================================

The words of ``stream`` rules cycle through ``alpha beta gamma delta epsilon zeta
eta theta`` (:func:`stream_words`); the words after a hold continue the cycle, so
the whole reply is ``stream_words(N + M)`` (N + M ≤ 100000).

**Gates** let a test (or a demo) act while a turn is provably still streaming,
without pacing by the clock. They are the only state of a :class:`ScriptedModel`
(one per server, so a gate is shared by every session of that server):

* A stream of ``stream N words then hold GATE`` is *held on* GATE (GATE is a
  single word, case-sensitive) from the moment it starts: it streams its N
  words, then waits at the gate until GATE is released, then streams the M words
  (if any), usage and finish.
* ``release GATE`` releases every stream held on GATE at that moment; each goes on
  at once (one that has not reached the gate yet passes it without stopping).
  The reply says how many: ``Released GATE: 1 held stream continues.`` /
  ``Released GATE: 2 held streams continue.``, or ``No stream is held on GATE.``
  when none is (a release is not remembered: a later hold on GATE waits for a
  later release). Send it from another session: in the held session it would
  queue behind the held turn (or, with ``on_busy: interrupt``, end it).
* Only a ``chat`` request that the rule answers acts on a gate: routing requests,
  and the orchestrator handing the message over, neither hold nor release.
* A held stream stays cancellable: waiting at the gate is a plain trio wait, so a
  cancel ends it at once (the runner closes the turn with the partial text as a
  truncated message). A stream that ends, fails or is cancelled stops holding
  its gate; a gate is open while some stream holds on it.
* At most :data:`MAX_OPEN_GATES` gates are open at once. A hold on another gate
  past that is refused: the reply is the single sentence ``Too many open gates
  (limit 64): not holding on GATE.``, with no words and no hold. Holding on a gate
  that is already open always works.

A message is handed over at most once: an agent that got it through
``switch_mode`` and would switch again answers with a sentence instead, so agents
never bounce a message between them.

A tool call is preceded by one short sentence ("Writing hello.py."). The rule's
call is issued even when the mode lacks that tool (so restrictions can be tested:
the runtime must refuse it), but only if the request offers *some* tools; with no
tools the reply is a sentence saying which tool it would use.

**After tool results** (the history ends with ``tool`` messages): one streamed
summary ``Done: <name> <target> succeeded.`` per result (read, list, search,
command, question and subtask results quote up to 80 characters of the result), or
``... failed: <text>`` when the result is an error (a JSON object with ``error`` or
``ok: false``, text starting with ``error``, ``denied``, ``unknown``, ``too many``
or the tool's name and a colon, or a refusal saying ``may not`` / ``may only``), or
``... was rejected by user: <feedback>`` when it contains that phrase. No tool call follows, except:

* ``loop`` keeps calling ``read_file``;
* the orchestrator doing ``first A then B`` calls ``new_task`` for B after A's
  result, then ``attempt_completion{result}`` summarising both;
* in a **subtask** (a system message contains :data:`SUBTASK_MARKER`; the runner
  puts that line in a child's system prompt) every reply that would end with text
  ends with ``attempt_completion{result: <that text>}`` instead.

Tool call ids are ``call_<n>``: *n* counts the assistant tool calls already in the
history, plus one (plus two for the second call of a message).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import attrs
import trio
from attrs import define, field, frozen

from sessions import JSON, JSONObject, dumps

from .._core._budget import MESSAGE_OVERHEAD, estimate_tokens
from .._core._model import (
    SUBTASK_MARKER,
    ChatMessage,
    FinishDelta,
    ModelDelta,
    ModelRequest,
    TextDelta,
    ToolCallDelta,
    ToolCallRequest,
    UsageDelta,
)
from .._core._modes import match_keyword
from ._settings import ProviderSettings

SLOW_PACE = 0.1
MAX_STREAM_WORDS = 100_000
# Gates are named by the client; a cap keeps a careless client from filling memory.
MAX_OPEN_GATES = 64

_F = re.IGNORECASE | re.DOTALL
_TWO_CREATES = re.compile(r"create (\S+) with (.+?) and create (\S+) with (.+)", _F)
_CREATE = re.compile(r"(?:create|write) (\S+) with (.+)", _F)
_EDIT = re.compile(r"edit (\S+) replace (.+?) with (.+)", _F)
_FIRST_THEN = re.compile(r"first (.+?),? then (.+)", _F)
_STREAM = re.compile(r"stream (\d+) words?\b.*", _F)
_HOLD = re.compile(r"stream (\d+) words?,? then hold (\S+)(?:,? then (\d+) words?\b)?.*", _F)
_RELEASE = re.compile(r"release (\S+).*", _F)
_SWITCH = re.compile(r"switch to (\S+).*", _F)
_CALL = re.compile(r"call (\S+)(?:\s+(\{.*\}))?\s*", _F | re.DOTALL)
_ARGUMENT_RULES: Sequence[tuple[re.Pattern[str], str, tuple[str, ...]]] = (
    (re.compile(r"read (\S+).*", _F), "read_file", ("path",)),
    (re.compile(r"list(?: (\S+).*)?", _F), "list_files", ("path",)),
    (re.compile(r"search (.+?) in (\S+)", _F), "search_files", ("regex", "path")),
    (re.compile(r"mkdir (\S+).*", _F), "create_directory", ("path",)),
    (re.compile(r"delete (\S+).*", _F), "delete_file", ("path",)),
    (re.compile(r"move (\S+) to (\S+).*", _F), "move_file", ("source", "destination")),
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
# How the runtime words refusals and failures (tools, modes, policy, switches).
_ERROR_PREFIXES = ("error", "denied", "unknown", "too many")
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


@define(eq=False)
class _Gate:
    """One open gate: the streams held on it wait for :attr:`released`."""

    released: trio.Event = field(factory=trio.Event)
    holders: int = 0


@define
class _Gates:
    """The open gates of one :class:`ScriptedModel`, by name (see **Gates**)."""

    limit: int
    open: dict[str, _Gate] = field(factory=dict)

    def hold(self, name: str) -> _Gate | None:
        """Hold a new stream on gate *name*; None if that would open too many gates."""
        gate = self.open.get(name)
        if gate is None:
            if len(self.open) >= self.limit:
                return None
            gate = self.open[name] = _Gate()
        gate.holders += 1
        return gate

    def leave(self, name: str, gate: _Gate) -> None:
        """A stream held on *gate* ended (or was cancelled): it no longer holds it."""
        gate.holders -= 1
        # After a release the name may already belong to a newer gate: keep that one.
        if gate.holders == 0 and self.open.get(name) is gate:
            del self.open[name]

    def release(self, name: str) -> int:
        """Release every stream held on *name*; how many there were."""
        gate = self.open.pop(name, None)
        if gate is None:
            return 0
        gate.released.set()
        return gate.holders


@frozen
class _Hold:
    name: str
    gate: _Gate
    after: int  # how many text chunks come before the gate


@frozen
class _Reply:
    text: str
    calls: tuple[Call, ...] = ()
    hold: _Hold | None = None


def stream_words(count: int) -> str:
    """The text of ``stream N words`` for N = *count* (words separated by one space)."""
    count = min(count, MAX_STREAM_WORDS)
    return " ".join(_WORDS[i % len(_WORDS)] for i in range(count))


class ScriptedModel:
    """The deterministic offline model; see the module docstring for its rules.

    Args:
        pace: seconds between streamed chunks (0: as fast as the consumer reads).
    """

    def __init__(self, pace: float = 0.0) -> None:
        if pace < 0:
            raise ValueError("pace must be >= 0")
        self.pace = pace
        self._gates = _Gates(MAX_OPEN_GATES)

    @property
    def name(self) -> str:
        return "scripted"

    def stream(
        self, request: ModelRequest
    ) -> AbstractAsyncContextManager[AsyncIterator[ModelDelta]]:
        """Stream the scripted reply to *request*.

        Cancellation: every chunk is a checkpoint (a ``trio.sleep`` when paced),
        and so is waiting at a gate; leaving the context closes the stream at once.
        """
        return self._open(request)

    @asynccontextmanager
    async def _open(self, request: ModelRequest) -> AsyncGenerator[AsyncIterator[ModelDelta]]:
        deltas = self._deltas(request)
        try:
            yield deltas
        finally:
            await deltas.aclose()

    async def _deltas(self, request: ModelRequest) -> AsyncGenerator[ModelDelta]:
        message, slow = _user_message(request.messages)
        reply = _reply(request, message, self._gates)
        hold = reply.hold
        # From here on the stream may hold a gate: every way out must leave it.
        try:
            first = len([c for m in request.messages for c in m.tool_calls]) + 1
            calls = [
                ToolCallRequest(f"call_{first + i}", name, dumps(args))
                for i, (name, args) in enumerate(reply.calls)
            ]
            pace = max(self.pace, SLOW_PACE) if slow else self.pace
            items: list[ModelDelta] = [TextDelta(t) for t in re.findall(r"\s*\S+", reply.text)]
            items += [ToolCallDelta(call) for call in calls]
            for i, item in enumerate(items):
                if hold is not None and i == hold.after:
                    await hold.gate.released.wait()
                if i and pace > 0:
                    await trio.sleep(pace)
                else:
                    await trio.lowlevel.checkpoint()
                yield item
            if hold is not None and hold.after >= len(items):
                await hold.gate.released.wait()
        finally:
            if hold is not None:
                self._gates.leave(hold.name, hold.gate)
        # Prompt tokens as a tokenizer would count them, roughly (chars / 4 and a
        # few per message), so context budgets behave offline as they do online.
        prompt = sum(
            estimate_tokens((m.content or "") + "".join(c.name + c.arguments for c in m.tool_calls))
            + MESSAGE_OVERHEAD
            for m in request.messages
        )
        completion = _count(reply.text) + sum(_count(call.arguments) for call in calls)
        yield UsageDelta(prompt, completion, request.model)
        yield FinishDelta("tool_calls" if calls else "stop")


@asynccontextmanager
async def open_from_settings(settings: ProviderSettings) -> AsyncIterator[ScriptedModel]:
    """The registry's factory: a :class:`ScriptedModel` paced by ``settings.pace``.

    Raises (on entering):
        ValueError: a negative pace.
    """
    # Nothing to close: the model holds no connection, only its gates.
    yield ScriptedModel(pace=settings.pace)


def _count(text: str | None) -> int:
    return len(text.split()) if text else 0


def _user_message(messages: Sequence[ChatMessage]) -> tuple[str, bool]:
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


def _reply(request: ModelRequest, message: str, gates: _Gates) -> _Reply:
    if request.purpose == "compact":
        return _Reply(
            _summary(request.messages[-1].content or "", request.messages[0].content or "")
        )
    if request.purpose == "route":
        agent, reason = route(message)
        return _Reply(json.dumps({"agent": agent, "reason": reason}))
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
    request: ModelRequest, message: str, gates: _Gates, *, handed_over: bool = False
) -> _Reply:
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
    elif match := _STREAM.fullmatch(message):
        return _Reply(stream_words(int(match[1])))
    elif match := _CALL.fullmatch(message):
        try:
            arguments = json.loads(match[2] or "{}")
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            return _Reply(f"The arguments for {match[1]} must be a JSON object.")
        calls = ((match[1], arguments),)
    else:
        calls = _argument_rule(message)
    if calls and calls[0][0] == "switch_mode":
        to_mode = calls[0][1].get("mode")
        if to_mode == agent:
            return _Reply(f"I am already the {agent} agent.")
        if handed_over:
            # A second hand-over of the same message could only bounce between agents.
            return _Reply(
                f"I am the {agent} agent. This message was handed over to me already, "
                f"so I will not hand it on to {to_mode}."
            )
    if not calls:
        return _Reply(
            f"I am the {agent} agent of the scripted model. You said: {_clip(message, 60)!r}. "
            "I only follow simple rules such as 'create FILE with TEXT', 'read FILE' and "
            "'run CMD'. Anything else gets this reply."
        )
    if not request.tools:
        names = " and ".join(name for name, _ in calls)
        return _Reply(
            f"I am the {agent} agent. I would call {names} now, but no tools are offered."
        )
    return _Reply(" ".join(_preface(name, args) for name, args in calls), calls)


def _hold(match: re.Match[str], gates: _Gates) -> _Reply:
    name = match[2]
    gate = gates.hold(name)
    if gate is None:
        return _Reply(f"Too many open gates (limit {gates.limit}): not holding on {name}.")
    head = min(int(match[1]), MAX_STREAM_WORDS)
    tail = min(int(match[3] or 0), MAX_STREAM_WORDS - head)
    return _Reply(stream_words(head + tail), hold=_Hold(name, gate, head))


def _release(name: str, gates: _Gates) -> _Reply:
    count = gates.release(name)
    if count == 0:
        return _Reply(f"No stream is held on {name}.")
    if count == 1:
        return _Reply(f"Released {name}: 1 held stream continues.")
    return _Reply(f"Released {name}: {count} held streams continue.")


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
    gates: _Gates,
) -> _Reply:
    if re.fullmatch(r"loop\b.*", message, _F):
        return _fresh(request, message, gates)
    first = _FIRST_THEN.fullmatch(message)
    if request.agent == "orchestrator" and first:
        start = max(i for i, m in enumerate(request.messages) if m.role == "user")
        tasks = [c for m in request.messages[start:] for c in m.tool_calls if c.name == "new_task"]
        if len(tasks) < 2:
            step = first[len(tasks) + 1]
            args: JSONObject = {"mode": route(step)[0], "message": step}
            return _Reply(_preface("new_task", args), (("new_task", args),))
        answers = {m.tool_call_id: m.content or "" for m in request.messages if m.role == "tool"}
        parts = []
        for i, task in enumerate(tasks[:2], 1):
            text = _result_text("new_task", answers.get(task.id, ""))[0]
            parts.append(f"Step {i} ({_target(task)}): {_clip(text, 200).rstrip('.')}")
        summary = "Both steps are done. " + "; ".join(parts)
        return _Reply("Finishing.", (("attempt_completion", {"result": summary}),))
    lines = [
        _describe(calls.get(r.tool_call_id or ""), r.content or "").rstrip(".") for r in results
    ]
    return _Reply("Done: " + "; ".join(lines) + ".")


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
