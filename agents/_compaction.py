"""Compaction, a step of a turn: summarise the oldest history and commit ``context.compacted``.

What to cut and how the history looks afterwards is decided by the pure
``_core/_context.py``; this module runs the summary call and commits:

1. ``compaction.started`` (durable: a client sees that the turn is compacting);
2. the summary call, streamed from the model (the session's model, or
   ``compaction_model``), inside the turn's cancel scope;
3. one commit of the call's ``usage`` and ``context.compacted``.

Cancellation: a cancel during the call (within the turn's bound, SPEC §3.3
rule 5) commits nothing more; the log then has ``compaction.started`` without
``context.compacted``, which changes no history: a half compaction is never
visible. Replay after a restart derives the same history from the log.
"""

from __future__ import annotations

import logging

import attrs

from sessions import new_id

from ._closing import estimated_usage
from ._config import RuntimeConfig
from ._core._budget import CHARS_PER_TOKEN, ModelLimits
from ._core._context import (
    COMPACTION_PROMPT,
    MIN_CUT_CHARS,
    ContextMeter,
    compacted_history,
    compaction_plans,
    fit_tool_result,
    message_tokens,
    transcript,
)
from ._core._events import CompactionStarted, ContextCompacted, UsageEvent
from ._core._model import (
    ChatMessage,
    ModelClient,
    ModelRequest,
    TextDelta,
    ToolSpec,
    UsageDelta,
)
from ._errors import AgentError, ModelError
from ._live_turn import Answering, AnsweringCall, Out
from ._metrics import RuntimeMetrics
from ._session import LiveSession

log = logging.getLogger("agent_runtime.compaction")

# Room left in the summariser's own window for its prompt and the chat template.
_PROMPT_ROOM = 256


async def compact(
    live: LiveSession,
    turn_id: str,
    model: ModelClient,
    config: RuntimeConfig,
    metrics: RuntimeMetrics,
    *,
    reason: str,
    session_model: str,
    tokens_before: int,
    overhead_tokens: int = 0,
    instructions: str | None = None,
    answering: dict[str, AnsweringCall] | None = None,
) -> bool:
    """Compact the main context of *live*; ``False`` if nothing can be cut.

    *overhead_tokens* is the estimated size of what every request sends besides
    the history (system prompt, tools): ``tokens_after`` includes it, like
    *tokens_before*. *answering* is the turn's (:attr:`LiveTurn.answering`):
    the summary call is in it while the model answers, so a cut one is billed
    by estimate.

    Raises:
        AgentError: the summary call failed or gave no text (nothing more is
            committed; the caller decides whether the turn can go on without).
    """
    state = live.state
    plans = compaction_plans(
        state.messages,
        state.message_seqs,
        keep_users=config.keep_user_messages,
        keep_from_seq=state.turn_seq,
        summary_from=state.summary_from,
    )
    summariser = config.compaction_model or session_model
    limits = config.models.limits(summariser)
    # A summary that grows with every compaction would fill the window by itself
    # and make every later step compact again: it is asked to stay within a
    # quarter of the budget, and cut to that if it does not.
    limit = max(limits.input_budget // 4, 64)
    system = f"{COMPACTION_PROMPT} Keep the summary under {limit * 3 // 4} words."
    if instructions:
        system += f"\n\nThe user asks you to keep in particular: {instructions}"
    budget = max((limits.input_budget - _PROMPT_ROOM) * CHARS_PER_TOKEN - len(system), 1_000)
    # The largest head the summariser can read whole (its window may be smaller
    # than the session model's): what it cannot read would be lost.
    has_summary = state.summary_from is not None
    for plan in reversed(plans):
        text = transcript(state.messages[: plan.split], budget, has_summary=has_summary)
        if text is not None:
            break
    else:
        return False
    await live.commit([Out(CompactionStarted(reason, tokens_before))], turn_id=turn_id)
    request = ModelRequest(
        model=summariser,
        messages=(ChatMessage("system", system), ChatMessage("user", text)),
        agent=state.agent or "coder",
        purpose="compact",
    )
    parts: list[str] = []
    usage: UsageDelta | None = None
    prompt = sum(message_tokens(message) for message in request.messages)
    this_call = AnsweringCall(summariser, prompt, limits, purpose="compact")
    tracked = Answering({} if answering is None else answering, new_id("compact"), this_call)
    try:
        async with model.stream(request) as deltas:
            async for delta in deltas:
                tracked.saw(delta)
                if isinstance(delta, TextDelta):
                    parts.append(delta.text)
                elif isinstance(delta, UsageDelta):
                    usage = delta
    except AgentError:
        if tracked.cut:
            # Failed mid-answer, billed all the same; the turn may go on without it.
            tracked.settled()
            await live.commit([Out(estimated_usage(this_call, "".join(parts)))], turn_id=turn_id)
        raise
    tracked.settled()
    summary = "".join(parts).strip()
    if not summary:
        raise AgentError(f"the model {summariser!r} gave an empty summary")
    summary = fit_tool_result(summary, limit * CHARS_PER_TOKEN)
    # The size after: measured on the history the fold will derive.
    after_messages, _ = compacted_history(
        state.messages, state.message_seqs, summary, plan.split, 0
    )
    after = ContextMeter().estimate(after_messages, "", (), 1 << 30) + overhead_tokens
    outs: list[Out] = []
    if usage is not None:
        cost = limits.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens or 0)
        outs.append(
            Out(
                UsageEvent(
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    usage.model,
                    usage.cached_tokens,
                    usage.reasoning_tokens,
                    cost,
                    "compact",
                )
            )
        )
    outs.append(
        Out(
            ContextCompacted(
                summary=summary,
                from_seq=plan.from_seq,
                to_seq=plan.to_seq,
                tokens_before=tokens_before,
                tokens_after=after,
                reason=reason,
                model=summariser,
                messages_replaced=plan.split,
            )
        )
    )
    await live.commit(outs, turn_id=turn_id)
    metrics.compactions.labels(reason).inc()
    log.info(
        "session %s: compacted %d messages (%s; ~%d -> ~%d tokens)",
        live.session.id,
        plan.split,
        reason,
        tokens_before,
        after,
    )
    return True


OVERFLOW = "context_overflow"


@attrs.frozen
class Window:
    """What one LLM step sends besides the history, and the model's limits."""

    model: str
    limits: ModelLimits
    system: str
    tools: tuple[ToolSpec, ...]
    share: float  # of the input budget one tool result may take

    @property
    def cut(self) -> int:
        """The longest tool result (chars) sent whole; longer ones are cut."""
        return max(int(self.limits.input_budget * self.share) * CHARS_PER_TOKEN, MIN_CUT_CHARS)

    @property
    def overhead(self) -> int:
        """Estimated tokens of what every request sends besides the history."""
        return ContextMeter().estimate([], self.system, self.tools, self.cut)


def overflow_error(model: str, window: int, provider: str, *, compacted: bool) -> ModelError:
    """The turn's error when the provider refuses the history as too large, and
    compacting it did not help (*compacted*) or could not (nothing to compact, or
    inside a subtask). *provider* is what the provider said: its window may be
    smaller than the one configured for *model*."""
    how = (
        "even after compacting it: the current turn alone is too large"
        if compacted
        else "and nothing of it could be compacted"
    )
    return ModelError(
        f"the conversation does not fit the context window of {model!r} ({window} tokens "
        f"configured), {how} (the provider said: {provider}). Send a shorter request, "
        "start a new session or fork an earlier point, or use a model with a larger window",
        retryable=False,
        code=OVERFLOW,
    )


async def keep_within(
    live: LiveSession,
    turn_id: str,
    model: ModelClient,
    config: RuntimeConfig,
    metrics: RuntimeMetrics,
    window: Window,
    reason: str,
    *,
    force: bool = False,
    instructions: str | None = None,
    answering: dict[str, AnsweringCall] | None = None,
) -> bool:
    """Compact the main context if its next request would pass the threshold.

    With *force* (the provider refused the request as too long, or the client
    asked) compact whatever the estimate says. Returns whether a compaction was
    committed. A failed threshold compaction is logged and the step goes on
    without it (the request may still fit); a failed forced one is the caller's
    error.
    """
    state = live.state
    estimate = state.meter(None).estimate(state.messages, window.system, window.tools, window.cut)
    if not force and estimate <= window.limits.input_budget * config.compact_at:
        return False
    try:
        return await compact(
            live,
            turn_id,
            model,
            config,
            metrics,
            reason=reason,
            session_model=window.model,
            tokens_before=estimate,
            overhead_tokens=window.overhead,
            instructions=instructions,
            answering=answering,
        )
    except AgentError as exc:
        if force:
            raise
        log.warning("turn %s: compaction failed, going on without: %s", turn_id, exc)
        return False
