"""What the chat client knows about its session: open work, running and ended turns.

:class:`ChatState` is derived from the durable events alone (in seq order), so a
client that reconnects, or starts afresh on an existing session, reaches the same
state by replaying the log. *Open work* is what the server waits for from an IDE:
``tool.call`` without its ``tool.result``, ``approval.requested`` without
``approval.resolved``, ``question.asked`` without ``question.answered``; a turn's
end closes whatever of it is left. ``answered`` remembers what this client has
already answered, so nothing is handled twice.

While the link catches up (:meth:`ChatState.catch_up` until :meth:`caught_up`) no
work is handed out. After a reconnect's catch-up, the approvals and questions
being asked that are still open are marked to be *shown again*: the worker asks
again (the prompt re-appears), once per reconnect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeAlias

import attrs
import trio

from sessions import JSONObject

WorkKind: TypeAlias = Literal["call", "approval", "question"]


@attrs.frozen
class Work:
    """Something the server waits for: a tool call, an approval or a question."""

    kind: WorkKind
    id: str
    event: JSONObject

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"

    @property
    def turn_id(self) -> str | None:
        turn = self.event.get("turn_id")
        return turn if isinstance(turn, str) else None


class ChatState:
    """What the client knows about the session, derived from the events it has seen."""

    def __init__(self) -> None:
        self.last_seq = 0
        self.catching_up = False
        self.running_turn: str | None = None
        self.ended: dict[str, str] = {}
        self.open: dict[str, Work] = {}
        self.answered: set[str] = set()
        self._busy: set[str] = set()
        self._reshow: set[str] = set()
        self._changed = trio.Event()

    def changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once *predicate* holds (re-checked after every change).

        Cancellation: safe; nothing is consumed.
        """
        while not predicate():
            await self._changed.wait()

    def catch_up(self) -> None:
        """A (re)connection starts: hand out no work until :meth:`caught_up`."""
        self.catching_up = True
        self.changed()

    def caught_up(self, *, reshow: bool = False) -> None:
        """Every event up to the resume point is recorded; with *reshow* (after a
        reconnect), what is being asked and still open is to be shown again."""
        self.catching_up = False
        if reshow:
            self._reshow = {
                key for key in self._busy if key in self.open and self.open[key].kind != "call"
            }
        self.changed()

    def must_reshow(self, work: Work) -> bool:
        """*work* is being asked and should be shown again (after a reconnect)."""
        return work.key in self._reshow

    def reshown(self, work: Work) -> None:
        """*work* is being shown again: not again until the next reconnect."""
        self._reshow.discard(work.key)

    def record(self, event: JSONObject) -> None:
        """Update open work and turn status from one durable event."""
        seq = event.get("seq")
        if isinstance(seq, int):
            self.last_seq = max(self.last_seq, seq)
        kind, turn = event.get("type"), event.get("turn_id")
        match kind:
            case "tool.call":
                self._open("call", event, "call_id")
            case "approval.requested":
                self._open("approval", event, "call_id")
            case "question.asked":
                self._open("question", event, "question_id")
            case "tool.result":
                self.open.pop(f"call:{event.get('call_id')}", None)
                self.open.pop(f"question:{event.get('call_id')}", None)
            case "approval.resolved":
                self.open.pop(f"approval:{event.get('call_id')}", None)
            case "question.answered":
                self.open.pop(f"question:{event.get('question_id')}", None)
            case "turn.started" if isinstance(turn, str):
                self.running_turn = turn
            case "turn.ended" if isinstance(turn, str):
                reason = event.get("reason")
                self.ended[turn] = reason if isinstance(reason, str) else "error"
                if self.running_turn == turn:
                    self.running_turn = None
                for key in [k for k, w in self.open.items() if w.turn_id == turn]:
                    del self.open[key]
        self.changed()

    def _open(self, kind: WorkKind, event: JSONObject, id_key: str) -> None:
        item_id = event.get(id_key)
        if isinstance(item_id, str):
            work = Work(kind, item_id, event)
            self.open[work.key] = work

    def _ready(self) -> Work | None:
        if self.catching_up:
            return None
        for key, work in self.open.items():
            if key not in self.answered and key not in self._busy:
                return work
        return None

    async def next_work(self) -> Work:
        """The oldest open item nobody here has answered or is handling; waits for one.

        Cancellation: safe; the item stays available.
        """
        await self.wait_until(lambda: self._ready() is not None)
        work = self._ready()
        assert work is not None
        self._busy.add(work.key)
        return work

    def done(self, work: Work) -> None:
        """*work* is answered (its command is in the outbox): never handle it again."""
        self.answered.add(work.key)
        self._busy.discard(work.key)
        self._reshow.discard(work.key)
        self.changed()

    def still_open(self, work: Work) -> bool:
        return work.key in self.open

    @property
    def idle(self) -> bool:
        """No turn running, nothing waiting for this client and nothing being handled.

        (An item being handled when its turn ends is still being stopped: a command
        being killed. The prompt waits for that.)
        """
        return (
            self.running_turn is None
            and not self._busy
            and self._ready() is None
            and not self.catching_up
        )
