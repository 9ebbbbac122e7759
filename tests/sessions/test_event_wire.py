"""An event's wire text: spliced from the payload text the store encoded, equal to to_json."""

from __future__ import annotations

import json

import hypothesis.strategies as st
from hypothesis import given

from sessions import JSON, Append, Event, GroupCommitStore, NewEvent, dumps

from .helpers import create_session

json_values: st.SearchStrategy[JSON] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
payloads = st.dictionaries(
    st.sampled_from(["text", "seq", "type", 'a"b', "ü", "turn_id", "ts"]) | st.text(),
    json_values,
    max_size=4,
)


@given(
    data=payloads,
    seq=st.integers(1, 2**63 - 1),
    ts=st.floats(0, 4e9, allow_nan=False),
    turn_id=st.none() | st.text(),
    kind=st.text(min_size=1),
)
def test_the_wire_text_is_to_json_with_or_without_the_payload_text(
    data: dict[str, JSON], seq: int, ts: float, turn_id: str | None, kind: str
) -> None:
    plain = Event('ses_"x', seq, kind, ts, data, turn_id)
    spliced = Event('ses_"x', seq, kind, ts, data, turn_id, payload_text=dumps(data))
    assert json.loads(plain.wire()) == plain.to_json()
    assert json.loads(spliced.wire()) == plain.to_json()
    # Envelope first, in the documented order, whichever way it was made.
    assert list(json.loads(spliced.wire()))[:4] == ["seq", "session_id", "type", "ts"]


def test_a_payload_that_names_an_envelope_field_does_not_override_it() -> None:
    data: dict[str, JSON] = {"seq": 99, "text": "hi"}
    event = Event("ses_1", 3, "text.delta", 1.5, data, payload_text=dumps(data))
    assert json.loads(event.wire()) == {
        "seq": 3,
        "session_id": "ses_1",
        "type": "text.delta",
        "ts": 1.5,
        "text": "hi",
    }


async def test_committed_and_read_events_carry_their_payload_text(
    store: GroupCommitStore,
) -> None:
    session = await create_session(store)
    committed = await store.append(
        Append(session.id, (NewEvent("text.delta", {"text": "hé \u2028"}, "turn_1"),))
    )
    (event,) = committed.events
    assert event.payload_text == '{"text":"hé \u2028"}'
    (read,) = await store.read_events(session.id)
    assert read.wire() == event.wire()
    assert json.loads(read.wire()) == event.to_json()
