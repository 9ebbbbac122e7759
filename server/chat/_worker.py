"""The chat client's worker: the open work of one run, handled one item at a time.

:class:`Worker` executes tool calls (journaled, so ``/undo`` can revert them) and
answers approvals and questions, oldest first; answers go out through the outbox.
An item that stops being open while it is handled (its turn ended, or another
client answered it) is abandoned, which kills a running command. :func:`unless` is
that abandonable wait (the driver's prompt uses it too). Separate from
:mod:`._client`, which runs the worker beside the link, the driver and Ctrl-C.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
import trio

from sessions import JSONObject

from ._command import ToolFailure
from ._input import Decider
from ._journal import Journal, journaled
from ._link import Outbox
from ._render import Renderer
from ._state import ChatState, Work
from ._tools import Workspace

_T = TypeVar("_T")


@attrs.frozen
class Running:
    """The tool call the worker is executing: *stop* kills it, *answered* follows its result."""

    stop: trio.Event = attrs.field(factory=trio.Event)
    answered: trio.Event = attrs.field(factory=trio.Event)


class Worker:
    """Handles the open work in *state*, oldest first (see the module docstring).

    *running* is the tool call being executed, if any (Ctrl-C stops it first).
    """

    def __init__(
        self,
        state: ChatState,
        outbox: Outbox,
        decider: Decider,
        journal: Journal,
        workspace: Workspace,
        renderer: Renderer,
        new_id: Callable[[], str],
    ) -> None:
        self.state = state
        self.outbox = outbox
        self.decider = decider
        self.journal = journal
        self.workspace = workspace
        self.renderer = renderer
        self.new_id = new_id
        self.running: Running | None = None

    async def run(self) -> None:
        while True:
            work = await self.state.next_work()
            fields: JSONObject | None
            if work.kind == "call":
                self.running = running = Running()
                fields = await self._execute(work, running.stop)
            elif work.kind == "approval":
                fields = await self._ask(work, self.decider.approval)
            else:
                fields = await self._ask(work, self.decider.answer)
            if fields is not None:
                await self.outbox.send(fields | {"id": self.new_id()})
            self.state.done(work)
            if self.running is not None:
                self.running.answered.set()
                self.running = None

    async def _execute(self, work: Work, stop: trio.Event) -> JSONObject | None:
        """The ``tool_result`` fields for *work*; ``None`` if it stopped being open."""
        event = work.event
        name, arguments = event.get("name"), event.get("arguments")
        base: JSONObject = {"type": "tool_result", "call_id": work.id}
        if not isinstance(name, str) or not isinstance(arguments, dict):
            return base | {"error": "malformed tool call"}

        async def execute() -> JSONObject:
            try:
                result = await journaled(  # so /undo can revert it
                    self.journal,
                    work.turn_id,
                    work.id,
                    name,
                    arguments,
                    lambda: self.workspace.execute(name, arguments, stop=stop),
                    note=lambda text: self.renderer.note(text, "yellow"),
                )
            except ToolFailure as error:
                return base | {"error": str(error)}
            return base | {"result": result}

        fields = await unless(execute, self.state, lambda: not self.state.still_open(work))
        if fields is Busy:
            self.renderer.note(
                "[stopped the tool call: no longer pending (its turn ended or another client "
                "answered it)]",
                "dim",
            )
            return None
        assert isinstance(fields, dict)
        return fields

    async def _ask(
        self, work: Work, decide: Callable[[JSONObject], Awaitable[JSONObject]]
    ) -> JSONObject | None:
        """The human's (or the rules') answer; ``None`` if it was resolved meanwhile.

        After a reconnect the question is asked again (the prompt re-appears), since
        the connection news was printed over it.
        """
        state = self.state
        while True:
            answer = await unless(
                lambda: decide(work.event),
                state,
                lambda: not state.still_open(work) or state.must_reshow(work),
            )
            if answer is not Busy:
                assert isinstance(answer, dict)
                return answer
            if not state.still_open(work):
                self.renderer.note("[no longer pending: answered elsewhere, expired or cancelled]")
                return None
            state.reshown(work)
            self.renderer.note("[still waiting for your answer:]", "yellow")


class Busy:
    """Marker: the wait was abandoned because the condition became true."""


async def unless(
    fn: Callable[[], Awaitable[_T]], state: ChatState, condition: Callable[[], bool]
) -> _T | type[Busy]:
    """``await fn()``, abandoned (returning :class:`Busy`) as soon as *condition* holds."""
    result: _T | type[Busy] = Busy

    async def run(cancel: trio.CancelScope) -> None:
        nonlocal result
        result = await fn()
        cancel.cancel()

    async def watch(cancel: trio.CancelScope) -> None:
        await state.wait_until(condition)
        cancel.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, nursery.cancel_scope)
        nursery.start_soon(watch, nursery.cancel_scope)
    return result


__all__ = ["Busy", "Running", "Worker", "unless"]
