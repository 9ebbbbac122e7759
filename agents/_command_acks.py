"""A command's idempotency record, and the original ack a repeated command id gets back.

Every client command commits one :class:`CommandRecord` (its ack, under its id)
together with its effect; a repeat finds that record and is answered with it.
Shared by the command modules (``_session_commands.py``, ``_call_answers.py``),
so it sits below both.
"""

from __future__ import annotations

import attrs

from sessions import CommandRecord, Committed

from ._core._commands import Ack
from ._session import LiveSession


def record(live: LiveSession, ack: Ack) -> CommandRecord:
    return CommandRecord(live.session.id, ack.id, ack.to_json())


def duplicate_ack(committed: Committed, command_id: str) -> Ack:
    """The original ack of a repeated command id: marked ``duplicate`` when it was
    taken, and a refusal as it was (SPEC §3.1: "the original acknowledgement").

    A refusal marked ``duplicate`` read as success (HTTP 200 on ``/commands``) to a
    client resending after a lost ack, and its command had never run.
    """
    original = Ack.from_json(committed.ack) if committed.ack else Ack(command_id, "accepted")
    if original.status == "rejected":
        return original
    return attrs.evolve(original, status="duplicate")
