"""The state a session folds from its own commits (typed events, never decoded) equals
the state folded afresh from the stored log (decoded), after every kind of event."""

from __future__ import annotations

import trio

from agents.testing import SessionState

from .harness import open_runtime


async def test_the_live_fold_equals_a_fresh_fold_of_the_log() -> None:
    async with open_runtime() as h:
        session = await h.session(agent="coder")
        with trio.fail_after(10):
            await h.message(session, "create a.py with print(1)")
            await h.approve_next(session)
            await h.answer_tool(session, "created a.py")
            await h.wait_for(session, "turn.ended")
            first = (await h.events(session))[-1].seq
            await h.message(session, "first read a.py then explain a.py")
            call = await h.wait_for(session, "tool.call", after=first)
            await h.answer_tool(session, "print(1)", after=first)
            await h.wait_for(session, "turn.ended", after=call.seq)
        live = await h.supervisor.history(session)
        fresh = SessionState(session.id)
        fresh.apply_all(await h.events(session))
        assert live == fresh.messages
        assert len(live) >= 6
