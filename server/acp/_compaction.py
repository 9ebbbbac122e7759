"""The runtime's context compactions → ACP ``compaction_update``: a pure fold over the log.

ACP v1 shows a compaction as one entity addressed by its id: the first
``compaction_update`` fixes its place in the timeline (``in_progress``), a later
one with the same id patches it (its end state, the summary). An agent sends them
only to a client that advertised ``session.compaction``.

The runtime logs a compaction as ``compaction.started`` and, when the summary is
made, ``context.compacted`` (docs/protocol.md §6). Its id here is
``compaction-<seq of compaction.started>``: the same on every replay of the log.
A compaction that fails is not logged as such: the turn either goes on without
it (a compaction on the threshold) or fails (an asked or forced one). So a
started one that no ``context.compacted`` follows ends at the first event that
shows its turn went past it:

- an ``error``: ``failed``, with its message;
- the turn's next reply (``text.delta``, ``message``): ``failed`` (the turn went
  on without it);
- ``turn.ended``: ``cancelled`` if the turn was, else ``failed``.

Other events (a ``usage`` of the summariser, a message queued by another client)
leave it in progress.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from sessions import JSON, JSONObject

from ._fields import str_field

# What ends a compaction still in progress: the turn went on, failed or ended.
_PAST_IT: Final = frozenset({"error", "text.delta", "message", "turn.ended"})
_CANCELLED: Final = frozenset({"cancelled", "interrupted"})
FAILED: Final = "the summary could not be made; the turn went on without it"


class CompactionUpdates:
    """The ``compaction_update`` payloads of one session's events (see the module docstring)."""

    def __init__(self) -> None:
        self._open: str | None = None  # the id of the compaction in progress

    def feed(self, event: Mapping[str, JSON]) -> list[JSONObject]:
        """The updates *event* makes (none for most events)."""
        kind = event.get("type")
        if kind == "compaction.started":
            out = self._end("failed", FAILED)  # a second start: the first never finished
            self._open = f"compaction-{event.get('seq')}"
            return [*out, _update(self._open, "in_progress")]
        if kind == "context.compacted":
            compaction_id = self._open or f"compaction-{event.get('seq')}"
            self._open = None
            summary = str_field(event, "summary")
            update = _update(compaction_id, "completed")
            update["summary"] = [{"type": "text", "text": summary}] if summary else []
            return [update]
        if self._open is None or kind not in _PAST_IT:
            return []
        if kind == "error":
            return self._end("failed", str_field(event, "message") or FAILED)
        if kind == "turn.ended" and str_field(event, "reason") in _CANCELLED:
            return self._end("cancelled", None)
        return self._end("failed", FAILED)

    def _end(self, status: str, error: str | None) -> list[JSONObject]:
        if self._open is None:
            return []
        update = _update(self._open, status)
        if error is not None:
            update["error"] = error
        self._open = None
        return [update]


def _update(compaction_id: str, status: str) -> JSONObject:
    return {"sessionUpdate": "compaction_update", "compactionId": compaction_id, "status": status}
