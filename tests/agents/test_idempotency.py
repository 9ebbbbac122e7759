"""A repeated command id answers ``duplicate`` with the original ack and has no second
effect, whatever the session's state says by then (the store checks it, once, in the
append that records the command)."""

from __future__ import annotations

import trio

from sessions import JSON

from .harness import open_runtime


async def test_a_repeated_approval_after_its_call_resolved_is_a_duplicate() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "create a.py with x")
        req = await h.wait_for(s, "approval.requested")
        approve: dict[str, JSON] = {
            "type": "approval",
            "id": "a-1",
            "call_id": req.data["call_id"],
            "decision": "approve",
        }
        first = await h.send(s, dict(approve))
        await h.answer_tool(s, "created")
        with trio.fail_after(10):
            await h.wait_for(s, "turn.ended")
        again = await h.send(s, dict(approve))
        assert first.status == "accepted"
        assert again.status == "duplicate", again
        assert (await h.types(s)).count("approval.resolved") == 1


async def test_a_repeated_cancel_after_the_turn_ended_is_a_duplicate() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "stream 5 words then hold g")
        await h.wait_for(s, "text.delta")
        cancel: dict[str, JSON] = {"type": "cancel", "id": "c-1"}
        first = await h.send(s, dict(cancel))
        again = await h.send(s, dict(cancel))
        assert first.status == "accepted"
        assert again.status == "duplicate" and again.turn_id == first.turn_id
        assert (await h.types(s)).count("turn.ended") == 1


async def test_a_repeated_rejected_command_gets_the_rejection_again() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        cancel: dict[str, JSON] = {"type": "cancel", "id": "c-2"}
        first = await h.send(s, dict(cancel))
        await h.message(s, "stream 5 words then hold g2")
        await h.wait_for(s, "text.delta")
        again = await h.send(s, dict(cancel))  # a turn runs now; the id was used already
        assert first.status == "rejected" and first.code == "no_turn"
        assert again == first  # the original ack: not "duplicate", which reads as taken
        assert s.id in await h.supervisor.running_turns([s.id])
        assert (await h.send(s, {"type": "cancel", "id": "c-3"})).status == "accepted"
