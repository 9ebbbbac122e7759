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
CMD, QUESTION run verbatim to the end of the message. Before a FILE or DIR the
words people write anyway are skipped (``read the file a.txt``, ``create a new
file named b.md with ...``: an article, ``file``/``folder``/``directory``,
``named``/``called``), and punctuation after it is dropped (``read a.txt.``);
``list files``, ``list the files`` and ``list all files in DIR`` list ``.`` or DIR.

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
``stream N words then cut off [by REASON]``        text of N words, ended as the provider cuts
                                                   an answer off: ``max_tokens`` (the default)
                                                   or ``content_filter``
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

import re
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import trio

from sessions import dumps

from .._core._budget import MESSAGE_OVERHEAD, estimate_tokens
from .._core._model import (
    FinishDelta,
    ModelDelta,
    ModelRequest,
    TextDelta,
    ToolCallDelta,
    ToolCallRequest,
    UsageDelta,
)
from ._scripted_gates import Gates

# Re-exported (``X as X``): these were defined here before they moved out.
from ._scripted_rules import MAX_STREAM_WORDS as MAX_STREAM_WORDS
from ._scripted_rules import Call as Call
from ._scripted_rules import reply_to, user_message
from ._scripted_rules import route as route
from ._scripted_rules import stream_words as stream_words
from ._settings import ProviderSettings

SLOW_PACE = 0.1
# Gates are named by the client; a cap keeps a careless client from filling memory.
MAX_OPEN_GATES = 64


class ScriptedModel:
    """The deterministic offline model; see the module docstring for its rules.

    Args:
        pace: seconds between streamed chunks (0: as fast as the consumer reads).
    """

    def __init__(self, pace: float = 0.0) -> None:
        if pace < 0:
            raise ValueError("pace must be >= 0")
        self.pace = pace
        self._gates = Gates(MAX_OPEN_GATES)

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
        message, slow = user_message(request.messages)
        reply = reply_to(request, message, self._gates)
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
        yield FinishDelta(reply.finish or ("tool_calls" if calls else "stop"))


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
