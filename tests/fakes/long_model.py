"""A deterministic "model" for long sessions, as a callable script of the fake OpenAI server.

:class:`LongModel` answers every ``POST /chat/completions`` the fake receives
(``open_fake_openai(LongModel(window=...))``) and checks what it is sent:

- **size**: ``prompt_tokens`` is ``ceil(len(raw JSON of messages) / 4)`` (an
  approximate tokenizer, reported in the usage chunk); a request over
  :attr:`LongModel.window` is refused with :func:`context_overflow_reply`, as
  OpenAI does, and counted in :attr:`LongModel.refusals`;
- **summaries** (the system message starts with ``COMPACTION_PROMPT``): the answer
  is every ``FACT <key>=<value>`` found in the transcript (an earlier summary
  included), one per line, so facts survive compaction after compaction;
- **chat**: ``note FACT k=v ...`` gets one ``read_file`` call (while no tool result
  follows the last user message), then ``noted``; ``what is k?`` gets ``k is v``
  if ``FACT k=v`` is anywhere in the request, else ``I do not know k``; anything
  else gets ``ok``;
- **pairing** of every chat request: each assistant tool call has exactly one
  later ``tool`` message, and each ``tool`` message answers an earlier call
  (violations in :attr:`LongModel.pairing_problems`).

The switches (:attr:`refuse_step`, :attr:`always_refuse`, :attr:`stall_summaries`,
:attr:`fail_summaries`) may be changed between turns.
"""

from __future__ import annotations

import json
import math
import re

import attrs

from agents._core._context import COMPACTION_PROMPT
from sessions import JSONObject
from tests.fakes.openai_server import (
    Behaviour,
    Done,
    RecordedRequest,
    Stall,
    Step,
    Stream,
    chunk,
    context_overflow_reply,
    finish_chunk,
    stream_text,
    tool_chunk,
    tool_fragment,
    usage_chunk,
)

FACT = re.compile(r"\bFACT (\w+)=(\w+)")
NOTE = re.compile(r"^note FACT (\w+)=(\w+)")
QUESTION = re.compile(r"^what is (\w+)\?")
NOTE_CALL = '{"path": "notes.txt"}'  # read_file's arguments, as JSON text


def raw_messages(request: RecordedRequest) -> str:
    """The JSON text of the request's ``messages`` array, as it was sent."""
    raw = request.raw.decode()
    start = raw.index('"messages"') + len('"messages"')
    while raw[start] in " \t\r\n:":
        start += 1
    _, end = json.JSONDecoder().raw_decode(raw, start)
    return raw[start:end]


def prompt_tokens(request: RecordedRequest) -> int:
    return math.ceil(len(raw_messages(request)) / 4)


def _messages(request: RecordedRequest) -> list[JSONObject]:
    messages = request.json()["messages"]
    assert isinstance(messages, list)
    out: list[JSONObject] = []
    for message in messages:
        assert isinstance(message, dict), message
        out.append(message)
    return out


def _text(message: JSONObject) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _call_ids(message: JSONObject) -> list[str]:
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        return []
    ids: list[str] = []
    for call in calls:
        assert isinstance(call, dict), call
        call_id = call.get("id")
        ids.append(call_id if isinstance(call_id, str) else repr(call_id))
    return ids


def pairing_problem(messages: list[JSONObject]) -> str | None:
    """What breaks tool-call pairing in *messages*, or ``None`` if it holds."""
    open_calls: set[str] = set()
    answered: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if role == "assistant":
            for call_id in _call_ids(message):
                if call_id in open_calls or call_id in answered:
                    return f"message {i}: tool call id {call_id!r} used twice"
                open_calls.add(call_id)
        elif role == "tool":
            answers = message.get("tool_call_id")
            if not isinstance(answers, str) or answers not in open_calls:
                what = "answered twice" if answers in answered else "answers no earlier call"
                return f"message {i}: tool result for {answers!r} {what}"
            open_calls.remove(answers)
            answered.add(answers)
    if open_calls:
        return f"tool calls without a result: {sorted(open_calls)}"
    return None


def facts(text: str) -> dict[str, str]:
    """The ``FACT k=v`` of *text*, in order of first appearance (a later value wins)."""
    found: dict[str, str] = {}
    for match in FACT.finditer(text):
        found[match[1]] = match[2]
    return found


@attrs.define
class LongModel:
    """The script: call it with each request (see the module docstring)."""

    window: int = 4096
    refuse_step: int = 0
    """Refuse chat request number *refuse_step* (from 1) of each turn as too long,
    once per turn (0: never). Turns are told apart by their last user message."""
    always_refuse: bool = False
    """Refuse every chat request as too long."""
    stall_summaries: bool = False
    """Answer summary requests with :class:`Stall` (the fake's ``stalled`` is set)."""
    fail_summaries: Behaviour | None = None
    """Answer summary requests with this instead (an error reply, a dropped stream)."""

    chats: int = 0
    summaries: int = 0
    refusals: int = 0
    """Requests refused because they were over :attr:`window`."""
    forced_refusals: int = 0
    """Refusals from :attr:`refuse_step` / :attr:`always_refuse`."""
    pairing_problems: list[str] = attrs.field(factory=list)
    largest: int = 0
    """The largest ``prompt_tokens`` seen."""
    _turn_requests: dict[str, int] = attrs.field(factory=dict)
    _calls: int = 0

    def __call__(self, request: RecordedRequest) -> Behaviour:
        tokens = prompt_tokens(request)
        self.largest = max(self.largest, tokens)
        messages = _messages(request)
        if tokens > self.window:
            self.refusals += 1
            return context_overflow_reply(self.window)
        if messages and _text(messages[0]).startswith(COMPACTION_PROMPT):
            return self._summary(messages, tokens)
        return self._chat(messages, tokens)

    def _summary(self, messages: list[JSONObject], tokens: int) -> Behaviour:
        self.summaries += 1
        if self.stall_summaries:
            return Stream((chunk({"role": "assistant", "content": ""}), Stall()))
        if self.fail_summaries is not None:
            return self.fail_summaries
        found = facts("\n".join(_text(m) for m in messages[1:]))
        summary = "\n".join(f"FACT {k}={v}" for k, v in found.items()) or "nothing to keep"
        return stream_text(summary, usage=(tokens, math.ceil(len(summary) / 4)))

    def _chat(self, messages: list[JSONObject], tokens: int) -> Behaviour:
        self.chats += 1
        problem = pairing_problem(messages)
        if problem is not None:
            self.pairing_problems.append(f"chat request {self.chats}: {problem}")
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        last = users[-1] if users else 0
        question = _text(messages[last]) if users else ""
        step = self._turn_requests[question] = self._turn_requests.get(question, 0) + 1
        if self.always_refuse or step == self.refuse_step:
            self.forced_refusals += 1
            return context_overflow_reply(self.window)
        if NOTE.match(question):
            if not any(m.get("role") == "tool" for m in messages[last + 1 :]):
                return self._read_notes(tokens)
            return stream_text("noted", usage=(tokens, 2))
        if asked := QUESTION.match(question):
            key = asked[1]
            everything = "\n".join(_text(m) for m in messages)
            value = facts(everything).get(key)
            answer = f"I do not know {key}" if value is None else f"{key} is {value}"
            return stream_text(answer, usage=(tokens, math.ceil(len(answer) / 4)))
        return stream_text("ok", usage=(tokens, 1))

    def _read_notes(self, tokens: int) -> Stream:
        self._calls += 1
        fragment = tool_fragment(
            0, call_id=f"call_notes_{self._calls}", name="read_file", arguments=NOTE_CALL
        )
        steps: list[Step] = [
            chunk({"role": "assistant", "content": None}),
            tool_chunk(fragment),
            finish_chunk("tool_calls"),
            usage_chunk(tokens, 12),
            Done(),
        ]
        return Stream(tuple(steps))
