"""The runtime's ledger → ACP usage: the editor's context and cost meter, a prompt's tokens.

Pure: no I/O, no clock. Two shapes (docs/acp.md, "Usage and cost"):

- the ``usage_update`` session update: ``used`` and ``size`` are the last
  ``turn.ended``'s ``context_tokens`` and ``context_window`` (the estimated size of
  the main context's next request, and its model's window: what the runtime's own
  clients show as "ctx 61%"), ``cost`` the session's total so far in US dollars,
  the sum of every ``turn.ended.usage.cost`` (the ledger's figure, so estimates of
  cut calls count, as the provider bills them). A session with no priced turn has
  no ``cost`` member: an unpriced model costs an unknown amount, never a made-up 0.
  :class:`UsageMeter` is that fold over the log;
- a prompt response's ``usage``: the turn's own token totals (:func:`prompt_usage`).

``usage_update`` is stable ACP v1; a prompt's ``usage`` is still unstable (in the
v1 schemas of ``@agentclientprotocol/sdk`` 2.4.0, which the tests pin).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from sessions import JSON, JSONObject

from ._fields import count_field

# Costs are summed as floats: rounded when sent, so 0.1 + 0.2 reads 0.3 (to a nano-dollar).
_COST_DIGITS: Final = 9


class UsageMeter:
    """The session's context meter and running cost, folded from its ``turn.ended`` events."""

    def __init__(self) -> None:
        self._context: tuple[int, int] | None = None  # used, size
        self._cost: float | None = None  # None while no turn was priced

    def turn_ended(self, event: Mapping[str, JSON]) -> None:
        """Count a ``turn.ended`` event: its context figures, its cost."""
        used, size = count_field(event, "context_tokens"), count_field(event, "context_window")
        if used is not None and size is not None:
            self._context = (used, size)
        usage = event.get("usage")
        cost = usage.get("cost") if isinstance(usage, dict) else None
        if isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost >= 0:
            self._cost = (self._cost or 0.0) + cost

    def update(self) -> JSONObject | None:
        """The ``usage_update`` of the meter now; ``None`` before any turn gave its context."""
        if self._context is None:
            return None
        used, size = self._context
        update: JSONObject = {"sessionUpdate": "usage_update", "used": used, "size": size}
        if self._cost is not None:
            update["cost"] = {"amount": round(self._cost, _COST_DIGITS), "currency": "USD"}
        return update


def prompt_usage(usage: JSON) -> JSONObject | None:
    """ACP's ``PromptResponse.usage`` of a turn's ``turn.ended.usage`` (``None`` without one).

    ``inputTokens`` are the prompt tokens (the cached ones among them, as the
    providers count), ``outputTokens`` the completion tokens (reasoning included),
    ``totalTokens`` their sum; ``cachedReadTokens`` and ``thoughtTokens`` say how many
    of each were cached or reasoning, when the ledger knows.
    """
    if not isinstance(usage, dict):
        return None
    prompt, completion = (
        count_field(usage, "prompt_tokens"),
        count_field(usage, "completion_tokens"),
    )
    if prompt is None or completion is None:
        return None
    result: JSONObject = {
        "inputTokens": prompt,
        "outputTokens": completion,
        "totalTokens": prompt + completion,
    }
    for ours, theirs in (
        ("cached_tokens", "cachedReadTokens"),
        ("reasoning_tokens", "thoughtTokens"),
    ):
        count = count_field(usage, ours)
        if count is not None:
            result[theirs] = count
    return result
