"""A re-arming wake-up: the one place the "swap an Event on change" idiom lives."""

from __future__ import annotations

import trio


class Signal:
    """Wakes every task waiting on it each time it :meth:`fire`\\ s.

    A waiter checks its condition, then waits: with no checkpoint in between
    (trio switches tasks only at checkpoints) no change can slip past unseen.
    Firing with nobody waiting costs nothing.
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def fire(self) -> None:
        event = self._event
        if event.statistics().tasks_waiting:
            event.set()
            self._event = trio.Event()

    async def wait(self) -> None:
        """Return at the next :meth:`fire`.

        Cancellation: a plain checkpoint; nothing to undo.
        """
        await self._event.wait()
