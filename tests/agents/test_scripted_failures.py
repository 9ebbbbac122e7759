"""The scripted model reports the results the runtime writes for unanswered calls as failures.

An expired approval, a call cut off by the end of its turn, a timeout, a fork, a
failed subtask: none of them "succeeded" (the demo must not say so).
"""

from __future__ import annotations

import pytest

from agents._core._state import (
    FORKED,
    QUESTION_EXPIRED,
    TOOL_EXPIRED,
    cancelled_text,
    closed_how,
)

from .test_scripted import WRITE, Call, assistant, reply, request, tool, user

READ: Call = ("call_1", "read_file", {"path": "a.py"})
ASK: Call = ("call_1", "ask_followup_question", {"question": "Which?"})
TASK: Call = ("call_1", "new_task", {"mode": "ask", "message": "explain a.py"})


@pytest.mark.parametrize(
    ("call", "content", "summary"),
    [
        (
            WRITE,
            "rejected: the approval request expired",
            "Done: write_file hello.py failed: rejected: the approval request expired.",
        ),
        (
            WRITE,
            "cancelled: the turn ended (cancelled)",
            "Done: write_file hello.py failed: cancelled: the turn ended (cancelled).",
        ),
        (
            READ,
            "the IDE did not return a result in time",
            "Done: read_file a.py failed: the IDE did not return a result in time.",
        ),
        (
            ASK,
            "no answer to the question in time",
            "Done: ask_followup_question Which? failed: no answer to the question in time.",
        ),
        (
            READ,
            "not run: the session was forked before this call finished",
            "Done: read_file a.py failed: not run: the session was forked before this call "
            "finished.",
        ),
        (
            TASK,
            "subtask failed: upstream returned 500",
            "Done: new_task ask failed: subtask failed: upstream returned 500.",
        ),
    ],
)
async def test_a_result_the_runtime_wrote_is_reported_as_a_failure(
    call: Call, content: str, summary: str
) -> None:
    history = (user("do it"), assistant(call), tool("call_1", content))
    assert await reply(request(*history)) == (summary, [])


def test_the_fold_tells_the_runtimes_closings_from_answers() -> None:
    assert closed_how(TOOL_EXPIRED) == closed_how(QUESTION_EXPIRED) == "expired"
    assert closed_how(cancelled_text("max_steps")) == closed_how(FORKED) == "cancelled"
    # What a client sends: an answer, or its error (always prefixed "error: ").
    assert closed_how("cancelled") is None
    assert closed_how("error: cancelled: the turn ended (cancelled)") is None
