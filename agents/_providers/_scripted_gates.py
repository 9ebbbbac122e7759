"""The gates of the scripted model: where its ``hold`` streams wait for a ``release``.

The rules are in the **Gates** section of ``_scripted.py``'s docstring; this is
their state (the only state a :class:`~agents._providers._scripted.ScriptedModel`
has), separate from the rules that decide when a reply holds or releases.
"""

from __future__ import annotations

import trio
from attrs import define, field, frozen


@define(eq=False)
class Gate:
    """One open gate: the streams held on it wait for :attr:`released`."""

    released: trio.Event = field(factory=trio.Event)
    holders: int = 0


@define
class Gates:
    """The open gates of one :class:`ScriptedModel`, by name (see **Gates**)."""

    limit: int
    open: dict[str, Gate] = field(factory=dict)

    def hold(self, name: str) -> Gate | None:
        """Hold a new stream on gate *name*; None if that would open too many gates."""
        gate = self.open.get(name)
        if gate is None:
            if len(self.open) >= self.limit:
                return None
            gate = self.open[name] = Gate()
        gate.holders += 1
        return gate

    def leave(self, name: str, gate: Gate) -> None:
        """A stream held on *gate* ended (or was cancelled): it no longer holds it."""
        gate.holders -= 1
        # After a release the name may already belong to a newer gate: keep that one.
        if gate.holders == 0 and self.open.get(name) is gate:
            del self.open[name]

    def release(self, name: str) -> int:
        """Release every stream held on *name*; how many there were."""
        gate = self.open.pop(name, None)
        if gate is None:
            return 0
        gate.released.set()
        return gate.holders


@frozen
class Hold:
    """A reply's hold: on gate *name*, after its first *after* text chunks."""

    name: str
    gate: Gate
    after: int  # how many text chunks come before the gate
