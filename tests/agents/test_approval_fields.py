"""An approval's optional fields go with their decisions (docs/protocol.md §4 ``approval``).

``feedback`` goes with ``reject``; ``remember: "session"`` with ``approve`` and
``edit`` (only an allowed call can be remembered). Elsewhere they are refused as
``invalid_command``, like a misplaced ``arguments`` or ``result``: a typo is an
error, not a silently ignored wish.
"""

from __future__ import annotations

import pytest

from agents._errors import CommandError
from agents.commands import SubmitApproval, parse_command
from sessions import JSON

from .harness import open_runtime

FEEDBACK = "field 'feedback' is only allowed with decision 'reject'"
REMEMBER = "field 'remember' may be 'session' only with decision 'approve' or 'edit'"
EDITED: dict[str, JSON] = {"arguments": {"path": "a.py", "content": "y"}}


def approval(decision: str, **fields: JSON) -> dict[str, JSON]:
    return {"type": "approval", "id": "1", "call_id": "c", "decision": decision, **fields}


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (approval("approve", feedback="hmm"), FEEDBACK),
        (approval("edit", feedback="hmm", **EDITED), FEEDBACK),
        (approval("respond", feedback="hmm", result="done"), FEEDBACK),
        (approval("reject", remember="session"), REMEMBER),
        (approval("respond", result="done", remember="session"), REMEMBER),
    ],
)
def test_a_misplaced_field_is_refused(command: dict[str, JSON], message: str) -> None:
    with pytest.raises(CommandError) as refused:
        parse_command(command)
    assert refused.value.code == "invalid_command"
    assert str(refused.value) == f"command 'approval': {message}"


@pytest.mark.parametrize(
    "command",
    [
        approval("reject", feedback="use src/"),
        approval("reject", feedback="no", remember="once"),
        approval("approve", remember="session"),
        approval("edit", remember="session", **EDITED),
        approval("respond", result="done", remember="once"),
        approval("approve", feedback=None),  # null is absent
    ],
)
def test_fields_in_their_place_are_accepted(command: dict[str, JSON]) -> None:
    assert isinstance(parse_command(command), SubmitApproval)


def test_a_constructed_approval_keeps_the_rule_too() -> None:
    with pytest.raises(ValueError, match="feedback"):
        SubmitApproval("1", "c", "approve", feedback="hmm")
    with pytest.raises(ValueError, match="remember"):
        SubmitApproval("1", "c", "reject", remember="session")


async def test_a_refused_decision_leaves_the_approval_pending() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "create a.py with x")
        request = await h.wait_for(s, "approval.requested")
        call_id = request.data["call_id"]
        ack = await h.send(
            s, {"type": "approval", "call_id": call_id, "decision": "approve", "feedback": "hmm"}
        )
        assert (ack.status, ack.code) == ("rejected", "invalid_command")
        assert [a.call_id for a in await h.store.pending_approvals(s.id)] == [call_id]
        assert "approval.resolved" not in await h.types(s)
