"""The turn runner: the agent loop of one turn (SPEC §4, §3.3).

LLM step → tool calls (approval first where the policy asks) → wait for every
result → next LLM step, until the model answers without tool calls, calls
``attempt_completion``, hits the step cap, fails or is cancelled. Every event is
committed through the live session before anyone can see it. The step cap is the
turn's, shared by its main context and every subtask (SPEC §4.1).

The model streams into a bounded memory channel; the runner drains whatever is
already queued and commits it as one ``text.delta`` (coalescing tokens keeps
persistence cheap without delaying anything that is ready).
"""

from __future__ import annotations

import logging

import attrs
import trio

from sessions import (
    JSON,
    JSONObject,
    Turn,
    loads_object,
    new_id,
    now,
    send_quickly,
    valid_text,
)

from ._closing import estimated_usage
from ._compaction import OVERFLOW, Window, keep_within, overflow_error
from ._config import RuntimeConfig
from ._core._budget import ModelLimits
from ._core._context import fit_history, message_tokens
from ._core._events import (
    AgentSwitched,
    AssistantMessage,
    SubtaskEnded,
    SubtaskStarted,
    TextDeltaEvent,
    ToolCallInfo,
    ToolResultEvent,
    UsageEvent,
    summarize,
)
from ._core._model import (
    CUT_OFF_REASONS,
    SUBTASK_MARKER,
    ChatMessage,
    FinishDelta,
    ModelClient,
    ModelDelta,
    ModelRequest,
    ProviderDataDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallRequest,
    UsageDelta,
)
from ._core._model_choice import model_for
from ._core._modes import ModeRegistry, parse_route_answer, route_by_keywords
from ._core._prompt import system_prompt
from ._core._state import (
    PARENT_CALL_KEY,
    PairingCursor,
    PendingCall,
    check_pairing,
)
from ._errors import AgentError, ModelError
from ._live_turn import Answering, AnsweringCall, LiveTurn, Out
from ._metrics import RuntimeMetrics
from ._session import LiveSession
from ._text_commits import TextCommits
from ._tools import ToolCatalogue
from ._turn_calls import TurnCalls

log = logging.getLogger("agent_runtime.runner")

SUBTASK_PROMPT = f"{SUBTASK_MARKER}: do only the task below, then call attempt_completion."
ROUTE_PROMPT = (
    "Classify the user's request. Answer only with JSON "
    '{"agent": NAME, "reason": TEXT}, NAME one of: '
)


class StepsExhausted(Exception):
    """The turn used all its LLM steps (SPEC §4.1): it ends ``max_steps``, wherever it was.

    Not an :class:`AgentError` on purpose: a subtask must not turn it into a
    failed result for its parent, which would then go on with steps the turn no
    longer has. It unwinds the whole turn to :func:`~agents._turn.run_turn`,
    whose closing ends every subtask still open (each before its parent's call).
    """


@attrs.define(eq=False)
class Outcome:
    """How an agent loop ended: ``completed`` or (a subtask) ``error``, with its final text."""

    reason: str
    text: str
    ok: bool = True


@attrs.define(eq=False)
class TurnRunner:
    """Runs one turn of one session; one instance per turn.

    Cancellation: :func:`~agents._turn.run_turn` runs it inside the turn's cancel
    scope; closing the turn after a cancel is ``close_turn``'s job, which works
    from the committed state alone.
    """

    live: LiveSession
    live_turn: LiveTurn
    model: ModelClient
    modes: ModeRegistry
    config: RuntimeConfig
    metrics: RuntimeMetrics
    tools: ToolCatalogue = attrs.field(factory=ToolCatalogue.builtin)
    switches: int = 0
    agents: dict[str | None, str] = attrs.field(factory=dict)  # context -> its agent
    # LLM steps the turn took so far, in every context (run_turn sets it from the
    # log when a turn resumes after a restart).
    steps: int = 0
    calls: TurnCalls = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.calls = TurnCalls(
            self.live, self.live_turn, self.modes, self.config, self.tools, self, self.agents
        )

    @property
    def turn(self) -> Turn:
        """The turn's row as this turn last committed it (kept on the live turn)."""
        return self.live_turn.row

    @turn.setter
    def turn(self, row: Turn) -> None:
        self.live_turn.row = row

    # -- routing ---------------------------------------------------------------

    async def route(self, text: str) -> tuple[str, str]:
        """Which agent should handle *text*: the model's JSON answer, else keywords."""
        names = ", ".join(self.modes.names())
        request = ModelRequest(
            model=self.config.model,
            messages=(ChatMessage("system", ROUTE_PROMPT + names), ChatMessage("user", text)),
            agent="orchestrator",
            purpose="route",
        )
        answer: list[str] = []
        usage: list[Out] = []
        # Billed like any call: in the ledger as purpose "route", estimated if cut.
        limits = self.config.models.limits(self.config.model)
        prompt = sum(message_tokens(message) for message in request.messages)
        this_call = AnsweringCall(self.config.model, prompt, limits, purpose="route")
        tracked = Answering(self.live_turn.answering, new_id("route"), this_call)
        try:
            async with self.model.stream(request) as deltas:
                async for delta in deltas:
                    tracked.saw(delta)
                    if isinstance(delta, TextDelta):
                        answer.append(delta.text)
                    elif isinstance(delta, UsageDelta):
                        usage.append(Out(attrs.evolve(self._usage(delta, limits), purpose="route")))
        except AgentError as exc:
            log.info("routing call failed (%s); using keywords", exc)
            if tracked.cut:  # it failed mid-answer: billed, and the turn goes on
                usage.append(Out(estimated_usage(this_call, "".join(answer))))
        tracked.settled()
        if usage:
            await self.live.commit(usage, turn_id=self.turn.id)
        parsed = parse_route_answer("".join(answer), self.modes)
        if parsed is not None:
            return parsed
        return route_by_keywords(text), "keyword routing"

    async def switch(self, to_agent: str, reason: str, subtask_id: str | None) -> str | None:
        """Switch the main context (or a subtask) to *to_agent*; an error text if refused."""
        if to_agent not in self.modes.names():
            return f"unknown mode {to_agent!r}; modes: {', '.join(self.modes.names())}"
        if self.switches >= self.config.max_switches:
            return f"too many agent switches in one turn (limit {self.config.max_switches})"
        self.switches += 1
        current = self.agents.get(subtask_id) or self.live.session.current_agent
        self.agents[subtask_id] = to_agent
        out = Out(AgentSwitched(current, to_agent, reason), subtask_id)
        if subtask_id is None:
            session = attrs.evolve(self.live.session, current_agent=to_agent, updated_at=now())
            self.turn = attrs.evolve(self.turn, agent=to_agent, updated_at=now())
            await self.live.commit([out], turn_id=self.turn.id, session=session, turn=self.turn)
        else:
            await self.live.commit([out], turn_id=self.turn.id)
        return None

    # -- the agent loop --------------------------------------------------------

    async def agent_loop(self, agent: str, subtask_id: str | None = None) -> Outcome:
        """Run LLM steps for *agent* in the main context or a subtask's until done.

        Open calls of this context (after a restart, or from the last message) are
        handled before the next LLM step, so a resumed turn simply carries on.

        Raises:
            StepsExhausted: the turn has no LLM step left for the next one.
        """
        self.agents.setdefault(subtask_id, agent)
        while True:
            pending = [
                c
                for c in self.live.state.pending_of_turn(self.turn.id)
                if c.subtask_id == subtask_id
            ]
            if pending:
                completion = await self.calls.handle(subtask_id, pending)
                if completion is not None:
                    return Outcome("completed", completion)
            if self.steps >= self.config.max_steps:
                raise StepsExhausted
            self.steps += 1
            text, has_calls = await self.llm_step(self.agents[subtask_id], subtask_id)
            if not has_calls:
                return Outcome("completed", text)

    async def llm_step(self, agent: str, subtask_id: str | None) -> tuple[str, bool]:
        """One streamed LLM call; commits deltas, usage and the final message."""
        mode = self.modes.get(agent)
        state = self.live.state
        system = system_prompt(
            mode.system_prompt,
            self.live.session.instructions,
            subtask_prompt=None if subtask_id is None else SUBTASK_PROMPT,
        )
        model_name = model_for(state, subtask_id, mode, self.config.model)
        tools = self.modes.tools_for(mode)
        if mode.mcp or self.tools.session_mcp is not None:
            tools = (await self.calls.offered(agent, subtask_id)).after(tools)  # as they are now
        limits = self.config.models.limits(model_name)
        window = Window(model_name, limits, system, tools, self.config.tool_result_share)
        message_id = new_id("msg")
        compacted = False
        while True:
            if subtask_id is None and not compacted:
                compacted = await self._keep_within(window, "threshold")
            history = state.context(subtask_id)
            check_pairing(history, state.pairing.setdefault(subtask_id, PairingCursor()))
            meter = state.meter(subtask_id)
            estimate = meter.estimate(history, system, tools, window.cut)
            if subtask_id is None:
                self.live_turn.context = (estimate, limits.context_window)
            request = ModelRequest(
                model=model_name,
                messages=(
                    ChatMessage("system", system),
                    *fit_history(history, window.cut, state.cuts, meter.oversized),
                ),
                tools=tools,
                agent=agent,
            )
            try:
                this_call = AnsweringCall(model_name, estimate, limits, subtask_id)
                content, calls, provider_data, held, finish = await self._stream(
                    request, message_id, this_call
                )
                break
            except ModelError as failure:
                error: BaseException = failure
            except BaseExceptionGroup as group:
                error = _sole(group)
            if not (isinstance(error, ModelError) and error.code == OVERFLOW):
                raise error from None
            # The provider says it does not fit: compact and retry once.
            if (
                compacted
                or subtask_id is not None
                or not await self._keep_within(window, "overflow", force=True)
            ):
                raise overflow_error(
                    model_name, limits.context_window, str(error), compacted=compacted
                ) from None
            compacted = True
        infos = []
        unique: list[ToolCallRequest] = []
        for call in calls:
            call = attrs.evolve(call, id=self.live.state.unique_call_id(call.id))
            unique.append(call)
            infos.append(ToolCallInfo(call.id, call.name, _arguments_object(call.arguments)))
        outs = list(held)
        if content or unique:
            # Said on the message: whole as sent, but not what the model meant to say.
            cut_off = finish if finish in CUT_OFF_REASONS else None
            message = AssistantMessage(
                message_id, content, agent, False, tuple(infos), provider_data, cut_off
            )
            outs.append(Out(message, subtask_id))
        if outs:
            await self.live.commit(outs, turn_id=self.turn.id)
        return content, bool(unique)

    async def compact_now(self, instructions: JSON) -> bool:
        """The step of a ``compact`` command's turn: compact whatever can be."""
        mode = self.modes.get(self.agents[None])
        model_name = model_for(self.live.state, None, mode, self.config.model)
        window = Window(
            model_name,
            self.config.models.limits(model_name),
            mode.system_prompt,
            self.modes.tools_for(mode),
            self.config.tool_result_share,
        )
        text = instructions if isinstance(instructions, str) else None
        return await self._keep_within(window, "requested", force=True, instructions=text)

    async def _keep_within(
        self, window: Window, reason: str, *, force: bool = False, instructions: str | None = None
    ) -> bool:
        return await keep_within(
            self.live,
            self.turn.id,
            self.model,
            self.config,
            self.metrics,
            window,
            reason,
            force=force,
            instructions=instructions,
            answering=self.live_turn.answering,
        )

    async def _stream(
        self, request: ModelRequest, message_id: str, this_call: AnsweringCall
    ) -> tuple[str, list[ToolCallRequest], dict[str, JSON], list[Out], str]:
        """Pump the model into a bounded channel; commit its text as it arrives.

        Returns the full text, the tool calls, the provider data, the events
        held back for the message's commit (usage: nobody waits for it, and a
        step then costs one commit fewer) and why the answer ended (the
        :class:`FinishDelta`'s reason, ``stop`` if none came). When the model fails, the text it
        sent before is committed first, then its error is raised: that text stays
        in the state as partial text (closed as truncated, without provider
        data), as does text committed before a cancel.

        From the model's first delta until its usage arrives, *this_call* is in the
        turn's :attr:`~LiveTurn.answering`: a call cut in between (cancel,
        error, shutdown) gets an estimated usage when the turn closes.
        """
        subtask_id, limits = this_call.subtask_id, this_call.limits
        tracked = Answering(self.live_turn.answering, message_id, this_call)
        text: list[str] = []
        calls: list[ToolCallRequest] = []
        provider_data: dict[str, JSON] = {}
        held: list[Out] = []
        finish = "stop"
        failures: list[Exception] = []
        # Text is queued, not waited for: a paced turn wakes once per chunk, not twice.
        texts = TextCommits(self.live, self.turn.id)
        send, receive = trio.open_memory_channel[ModelDelta](self.config.chunk_buffer)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, request, send, failures)
            async with receive:
                async for first in receive:
                    tracked.began()  # before any wait: from here a cut is estimated
                    # Paced tokens find nothing in flight; in a burst, what comes
                    # while a chunk commits joins the next one (TextCommits.ready).
                    await texts.ready()
                    batch = [first]
                    while True:
                        try:
                            batch.append(receive.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    # Repaired, not refused: a model's stray surrogate must not fail the turn.
                    chunk = valid_text("".join(d.text for d in batch if isinstance(d, TextDelta)))
                    if chunk:
                        text.append(chunk)
                        held.append(Out(TextDeltaEvent(message_id, chunk), subtask_id))
                    for delta in batch:
                        if isinstance(delta, ToolCallDelta):
                            call = delta.call
                            calls.append(
                                attrs.evolve(
                                    call,
                                    id=valid_text(call.id),
                                    name=valid_text(call.name),
                                    arguments=valid_text(call.arguments),
                                )
                            )
                        elif isinstance(delta, ProviderDataDelta):
                            provider_data[delta.provider] = _valid_json(delta.data)
                        elif isinstance(delta, UsageDelta):
                            tracked.settled()
                            held.append(Out(self._usage(delta, limits), subtask_id))
                        elif isinstance(delta, FinishDelta):
                            finish = delta.reason
                    if chunk:  # text is shown as it comes; the rest waits for it
                        outs, held = held, []
                        await texts.commit(outs)
        await texts.drain()
        if failures:
            raise failures[0]
        tracked.settled()
        return "".join(text), calls, provider_data, held, finish

    def _usage(self, delta: UsageDelta, limits: ModelLimits) -> UsageEvent:
        cached, reasoning = delta.cached_tokens, delta.reasoning_tokens
        cost = limits.cost(delta.prompt_tokens, delta.completion_tokens, cached or 0)
        return UsageEvent(
            delta.prompt_tokens, delta.completion_tokens, delta.model, cached, reasoning, cost
        )

    async def _pump(
        self,
        request: ModelRequest,
        send: trio.MemorySendChannel[ModelDelta],
        failures: list[Exception],
    ) -> None:
        """Send the model's deltas; on its failure, end the channel and hand the error over.

        Not raised here: that would cancel the consumer with deltas still in the
        channel, and the text the model sent before failing would be lost.
        """
        started = trio.current_time()
        first = True
        async with send:
            try:
                async with self.model.stream(request) as deltas:
                    async for delta in deltas:
                        if first:
                            first = False
                            self.metrics.llm_first_token.labels(self.model.name).observe(
                                trio.current_time() - started
                            )
                        await send_quickly(send, delta)
            except Exception as failure:
                failures.append(failure)

    async def subtask(self, call: PendingCall, mode: str, message: str, parent: str | None) -> None:
        """Run a child agent with an isolated context; its result answers *call*.

        A subtask left open by a restart is resumed rather than started again. One
        nested deeper than ``max_subtask_depth`` is refused (the model is told, and
        can do the work itself); none is started when the turn has no step left.

        Raises:
            StepsExhausted: the turn's steps ran out, here or in the child.
        """
        state = self.live.state
        existing = state.subtask_of_call(call.call_id)
        limit = self.config.max_subtask_depth
        if existing is not None:
            subtask_id, mode = existing
        elif mode not in self.modes.names():
            await self.calls.tool_result(call.call_id, False, f"unknown mode {mode!r}", parent)
            return
        elif state.subtask_depth(parent) >= limit:
            refusal = (
                f"too many nested subtasks (limit {limit}): "
                "do this task here instead of delegating it"
            )
            await self.calls.tool_result(call.call_id, False, refusal, parent)
            return
        elif self.steps >= self.config.max_steps:
            raise StepsExhausted  # a child without a single step would only open and close
        else:
            subtask_id = new_id("sub")
            model = call.arguments_object().get("model")  # schema-checked: a name, or absent
            own_model = model if isinstance(model, str) else None
            started = Out(
                SubtaskStarted(subtask_id, mode, message, own_model),
                parent,
                {PARENT_CALL_KEY: call.call_id},
            )
            await self.live.commit([started], turn_id=self.turn.id)
        cut: list[Out] = []
        try:
            outcome = await self.agent_loop(mode, subtask_id)
        except AgentError as exc:
            outcome = Outcome("error", f"subtask failed: {exc}", ok=False)
            # Its call that failed mid-answer is billed: estimated, before the subtask ends.
            answering = self.live_turn.answering
            for message_id in [m for m, c in answering.items() if c.subtask_id == subtask_id]:
                received = state.partial_text.get(message_id, "")
                cut.append(Out(estimated_usage(answering.pop(message_id), received), subtask_id))
        text = outcome.text or "(the subtask finished without a result)"
        ended = Out(SubtaskEnded(subtask_id, mode, outcome.ok, summarize(text)), parent)
        result = Out(ToolResultEvent(call.call_id, outcome.ok, summarize(text), text), parent)
        await self.live.commit([*cut, ended, result], turn_id=self.turn.id)


def _sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside nested groups (a nursery wraps even a single error)."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    return leaves[0] if len(leaves) == 1 else group


def _valid_json(value: JSON) -> JSON:
    """*value* with lone surrogates repaired, as model text is: the store cannot hold them."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, list):
        return [_valid_json(item) for item in value]
    if isinstance(value, dict):
        return {valid_text(key): _valid_json(item) for key, item in value.items()}
    return value


def _arguments_object(raw: str) -> JSONObject:
    """The call's arguments for display; the raw text when the model sent no object."""
    try:
        return loads_object(raw)
    except ValueError:
        return {"_raw": raw}
