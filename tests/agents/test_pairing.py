"""Incremental pairing checks agree with a full check of the same history, step by step."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given

from agents import PairingViolation
from agents._core._state import PairingCursor, check_pairing
from agents.model import ChatMessage, ToolCallRequest

IDS = ["c1", "c2", "c3", "c4"]

messages = st.one_of(
    st.builds(lambda: ChatMessage("user", "hi")),
    st.lists(st.sampled_from(IDS), max_size=2).map(
        lambda ids: ChatMessage(
            "assistant", None, tuple(ToolCallRequest(i, "read_file", "{}") for i in ids)
        )
    ),
    st.sampled_from(IDS).map(lambda i: ChatMessage("tool", "x", tool_call_id=i)),
)


def _verdict(history: list[ChatMessage], cursor: PairingCursor | None = None) -> str | None:
    try:
        check_pairing(history, cursor)
    except PairingViolation as exc:
        return str(exc)
    return None


@given(chunks=st.lists(st.lists(messages, max_size=3), max_size=8))
def test_a_growing_history_gets_the_full_checks_verdicts(
    chunks: list[list[ChatMessage]],
) -> None:
    history: list[ChatMessage] = []
    cursor = PairingCursor()
    for chunk in chunks:
        history.extend(chunk)
        assert _verdict(history, cursor) == _verdict(history)


@given(first=st.lists(messages, max_size=6), second=st.lists(messages, max_size=6))
def test_another_or_a_shorter_list_is_checked_from_the_start(
    first: list[ChatMessage], second: list[ChatMessage]
) -> None:
    cursor = PairingCursor()
    _verdict(first, cursor)
    assert _verdict(second, cursor) == _verdict(second)
    del second[len(second) // 2 :]
    assert _verdict(second, cursor) == _verdict(second)
