"""The LLM-visible context of a long session: its size, its cut tool results, its compaction.

Pure functions and values (no I/O): the runner decides *when* with them, the fold
applies a ``context.compacted`` event with :func:`compacted_history`, and replay
after a restart derives the same history from the same events.

Size is estimated (:func:`~agents._core._budget.estimate_tokens`): a
:class:`ContextMeter` keeps a running estimate of one history list, and when the
provider reported the exact ``prompt_tokens`` of an earlier call (the *basis*),
the estimate for the next call is that figure plus the estimate of what was
appended since. So the error of the estimator only applies to the new messages.
"""

from __future__ import annotations

import attrs
from attrs import frozen

from ._budget import MESSAGE_OVERHEAD, estimate_tokens
from ._model import ChatMessage, ToolSpec

SUMMARY_HEADER = "[Summary of the earlier conversation, which it replaces]"
CUT_MARKER = "[... {cut} characters cut here; the whole result is in the session log. {hint}]"
CUT_HINT = "Ask for less (e.g. read_file with a line range) to see the rest."
MIN_CUT_CHARS = 200  # below this a cut result would say nothing

COMPACTION_PROMPT = (
    "You compact the conversation of a coding agent with its user so that the work can "
    "go on with less context. Write a summary that the agent will read instead of the "
    "conversation below. Keep: the user's goals and requests, decisions and their "
    "reasons, facts and values the user gave, file paths, names, commands and their "
    "outcomes, what was changed, and what is still open. Be concise and precise; use "
    "short bullet points; do not invent anything. Answer with the summary only."
)


# -- cutting oversized tool results ------------------------------------------------


def fit_tool_result(content: str, limit: int) -> str:
    """*content*, or its head and tail with a marker if it is longer than *limit* chars.

    Never longer than *content*, and at most *limit* chars when *limit* leaves
    room for the marker (a smaller one keeps only the head, with a short mark).
    """
    if len(content) <= limit:
        return content
    room = limit - len(CUT_MARKER) - len(CUT_HINT) - 20
    if room < MIN_CUT_CHARS:
        keep = max(limit - 12, 0)
        return f"{content[:keep]}[… {len(content) - keep} cut]"[: max(limit, 1)]
    head = room * 2 // 3
    tail = room - head
    cut = len(content) - head - tail
    marker = CUT_MARKER.format(cut=cut, hint=CUT_HINT)
    return f"{content[:head]}\n{marker}\n{content[len(content) - tail :]}"


def fit_history(
    messages: list[ChatMessage],
    limit: int,
    cuts: dict[str, ChatMessage],
    oversized: list[int] | None = None,
) -> list[ChatMessage]:
    """*messages* with every tool result longer than *limit* chars cut (:func:`fit_tool_result`).

    Returns *messages* itself when nothing needs cutting. *cuts* (kept by the
    caller, by call id) holds each cut message once, so repeated calls hand the
    providers the very same objects (their encodings are cached on them).
    """
    fitted: list[ChatMessage] | None = None
    # *oversized*: the indexes a ContextMeter found over *limit* (saves a scan of
    # a long history on every step).
    for i in range(len(messages)) if oversized is None else oversized:
        message = messages[i]
        if message.role != "tool" or message.content is None or len(message.content) <= limit:
            continue
        key = f"{message.tool_call_id}:{limit}"
        cut = cuts.get(key)
        if cut is None:
            cut = cuts[key] = attrs.evolve(
                message, content=fit_tool_result(message.content, limit), parts=()
            )
        if fitted is None:
            fitted = list(messages)
        fitted[i] = cut
    return messages if fitted is None else fitted


# -- size ------------------------------------------------------------------------------


def message_tokens(message: ChatMessage, limit: int | None = None) -> int:
    """The estimated tokens of *message* in a request (tool results cut at *limit* chars)."""
    size = len(message.content or "")
    if limit is not None and message.role == "tool":
        size = min(size, max(limit, MIN_CUT_CHARS) + len(CUT_MARKER) + len(CUT_HINT))
    for call in message.tool_calls:
        size += len(call.name) + len(call.arguments) + len(call.id)
    return -(-size // 4) + MESSAGE_OVERHEAD


def tools_tokens(tools: tuple[ToolSpec, ...]) -> int:
    size = sum(len(t.name) + len(t.description) + len(repr(t.parameters)) for t in tools)
    return -(-size // 4) + MESSAGE_OVERHEAD * len(tools)


@attrs.define(eq=False)
class ContextMeter:
    """A running size estimate of one history list, and the last reported size.

    Histories only grow between calls (a compaction replaces the list); the meter
    counts only messages it has not seen. ``basis`` is ``(prompt_tokens,
    messages)``: a call whose history had that many messages was reported by
    the provider as that many prompt tokens.
    """

    messages: list[ChatMessage] | None = None
    limit: int | None = None
    counted: int = 0
    sums: list[int] = attrs.field(factory=lambda: [0])  # sums[i]: tokens of messages[:i]
    basis: tuple[int, int] | None = None
    oversized: list[int] = attrs.field(factory=list)  # tool results longer than ``limit``

    def estimate(
        self, history: list[ChatMessage], system: str, tools: tuple[ToolSpec, ...], limit: int
    ) -> int:
        """Estimated prompt tokens of a request of *system*, *history* and *tools*."""
        if history is not self.messages or limit != self.limit or len(history) < self.counted:
            if history is not self.messages:
                self.basis = None
            self.messages, self.limit, self.counted, self.sums = history, limit, 0, [0]
            self.oversized = []
        # A slice of the new messages: itertools.islice would walk the counted ones.
        for i, message in enumerate(history[self.counted :], self.counted):
            self.sums.append(self.sums[-1] + message_tokens(message, limit))
            if message.role == "tool" and len(message.content or "") > limit:
                self.oversized.append(i)
        self.counted = len(history)
        if self.basis is not None and self.basis[1] <= len(history):
            reported, at = self.basis
            return reported + self.sums[-1] - self.sums[at]
        return estimate_tokens(system) + MESSAGE_OVERHEAD + tools_tokens(tools) + self.sums[-1]

    def report(self, history: list[ChatMessage], prompt_tokens: int, at: int) -> None:
        """The provider counted *prompt_tokens* for a call that sent ``history[:at]``."""
        if prompt_tokens > 0:
            if history is not self.messages:
                self.messages, self.counted, self.sums, self.oversized = history, 0, [0], []
            self.basis = (prompt_tokens, at)


# -- compaction --------------------------------------------------------------------


@frozen
class CompactionPlan:
    """Replace ``messages[:split]`` (events ``from_seq``..``to_seq``) by a summary."""

    split: int
    from_seq: int
    to_seq: int


def plan_compaction(
    messages: list[ChatMessage],
    seqs: list[int],
    *,
    keep_users: int,
    keep_from_seq: int | None,
    summary_from: int | None = None,
) -> CompactionPlan | None:
    """Where to cut *messages* (whose events are *seqs*), or ``None`` if nothing can go.

    The tail kept verbatim starts at a user message, so no tool call is ever
    parted from its result (a turn's calls are all answered before the next
    user message), and it holds at least the last *keep_users* user messages and
    every message of events from *keep_from_seq* on (the current turn).
    *summary_from* is set when ``messages[0]`` is an earlier summary (the first
    event it covers): that summary is always part of what is replaced.
    """
    plans = compaction_plans(
        messages,
        seqs,
        keep_users=keep_users,
        keep_from_seq=keep_from_seq,
        summary_from=summary_from,
    )
    return plans[-1] if plans else None


def compaction_plans(
    messages: list[ChatMessage],
    seqs: list[int],
    *,
    keep_users: int,
    keep_from_seq: int | None,
    summary_from: int | None = None,
) -> list[CompactionPlan]:
    """Every valid cut of :func:`plan_compaction`, the smallest head first.

    A summariser whose window cannot take the largest head is given a smaller
    one (what it cannot read would be lost, not summarised).
    """
    if len(messages) != len(seqs) or not messages:
        return []
    first = 0 if summary_from is None else 1
    users = [i for i in range(first, len(messages)) if messages[i].role == "user"]
    keep_start = len(messages)
    if keep_users > 0:
        keep_start = users[-keep_users] if len(users) >= keep_users else 0
    if keep_from_seq is not None:
        current = next(
            (i for i in range(first, len(seqs)) if seqs[i] >= keep_from_seq), len(messages)
        )
        keep_start = min(keep_start, current)
    # The cut falls on a user message at or before keep_start, after something new.
    start = seqs[0] if summary_from is None else summary_from
    return [
        CompactionPlan(split, start, seqs[split - 1])
        for split in users
        if first < split <= keep_start
    ]


def summary_message(summary: str) -> ChatMessage:
    return ChatMessage("user", f"{SUMMARY_HEADER}\n{summary}")


def compacted_history(
    messages: list[ChatMessage], seqs: list[int], summary: str, split: int, seq: int
) -> tuple[list[ChatMessage], list[int]]:
    """The history after a ``context.compacted`` (event *seq*) replacing ``messages[:split]``.

    New lists (never the old ones changed in place): caches keyed by a history's
    identity start over.
    """
    return [summary_message(summary), *messages[split:]], [seq, *seqs[split:]]


def split_of(seqs: list[int], to_seq: int, has_summary: bool) -> int:
    """The index of the first message kept when events up to *to_seq* are replaced."""
    first = 1 if has_summary else 0
    return next((i for i in range(first, len(seqs)) if seqs[i] > to_seq), len(seqs))


def transcript(
    messages: list[ChatMessage],
    budget_chars: int,
    *,
    has_summary: bool = False,
    result_chars: int = 2_000,
) -> str | None:
    """*messages* as plain text for the summariser, within *budget_chars*; ``None`` if
    even cut down it cannot hold every user message and the earlier summary.

    Plain text rather than chat messages: the summary call then needs no tools
    and has no pairing to keep. Tool results are cut to *result_chars*. If the
    whole is still too long, what the agent said and the tools returned is cut
    shorter and shorter (the user's words and an earlier summary carry the goals
    and facts, and are never dropped: the caller then summarises less at a time).
    """
    user: list[bool] = []
    texts: list[str] = []
    for i, message in enumerate(messages):
        if i == 0 and has_summary:
            texts.append(f"EARLIER SUMMARY:\n{(message.content or '')[len(SUMMARY_HEADER) + 1 :]}")
            user.append(True)
        elif message.role == "tool":
            texts.append(f"TOOL RESULT: {message.content or ''}")
            user.append(False)
        else:
            calls = "".join(f"\n[calls {c.name} {c.arguments}]" for c in message.tool_calls)
            texts.append(f"{message.role.upper()}: {message.content or ''}{calls}")
            user.append(message.role == "user")
    for clip in (result_chars, 500, 160, 60, 0):
        lines = [t if u else fit_tool_result(t, clip) for t, u in zip(texts, user, strict=True)]
        if clip == 0:
            lines = [t for t, u in zip(texts, user, strict=True) if u]
        if _joined(lines) <= budget_chars:
            return "\n\n".join(lines)
    return None


def _joined(lines: list[str]) -> int:
    return sum(len(line) + 2 for line in lines)
