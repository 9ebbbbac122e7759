"""Every JSON example of docs/protocol.md round-trips through the real encoders."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args

import pytest

from agents import Ack, AgentEvent, decode_event, encode_event
from agents.commands import Command, encode_command, parse_command

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
ENVELOPE = ("seq", "session_id", "type", "ts", "turn_id")
# Payload keys the runtime adds next to an event's own fields (documented in the doc).
EXTRAS = {"subtask_id", "remember"}
FRAMES = {
    "hello": ({"type"}, {"after", "token"}),
    "sync": ({"type", "session", "after"}, set()),
    "heartbeat": ({"type"}, set()),
    "error": ({"type", "code", "message"}, {"id"}),
}


def examples() -> list[dict[str, Any]]:
    blocks = re.findall(r"^```json\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.M | re.S)
    parsed = [json.loads(block) for block in blocks]
    assert all(isinstance(example, dict) for example in parsed)
    return parsed


EXAMPLES = examples()
COMMAND_TYPES = {cls.type for cls in get_args(Command)}
EVENT_TYPES = {cls.type for cls in get_args(AgentEvent)}


def kind(example: dict[str, Any]) -> str:
    if "seq" in example:
        return "event"
    if example["type"] in COMMAND_TYPES:
        return "command"
    return str(example["type"])


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{kind(e)}:{e['type']}")
def test_example_round_trips(example: dict[str, Any]) -> None:
    match kind(example):
        case "event":
            payload = {k: v for k, v in example.items() if k not in ENVELOPE}
            event = decode_event(example["type"], payload)
            wire_type, encoded = encode_event(event)
            assert wire_type == example["type"]
            assert encoded == {k: v for k, v in payload.items() if k in encoded or k not in EXTRAS}
            assert isinstance(example["seq"], int) and example["seq"] >= 1
            assert isinstance(example["session_id"], str)
            assert isinstance(example["ts"], float)
            # Committed outside any turn: a message before its turn starts, the deletion.
            outside = example["type"] in ("user.message", "session.deleted")
            assert (example.get("turn_id") is None) == outside
        case "command":
            command = parse_command(example)
            encoded = encode_command(command)
            assert {k: encoded[k] for k in example} == example
            assert parse_command(encoded) == command
        case "ack":
            assert Ack.from_json(example).to_json() == example
        case frame:
            required, optional = FRAMES[frame]
            assert required <= example.keys() <= required | optional


def test_every_command_event_and_frame_is_documented() -> None:
    kinds = {kind(example) for example in EXAMPLES}
    assert {"command", "event", "ack", *FRAMES} <= kinds
    assert {e["type"] for e in EXAMPLES if kind(e) == "command"} == COMMAND_TYPES
    assert {e["type"] for e in EXAMPLES if kind(e) == "event"} == EVENT_TYPES
    text = DOC.read_text(encoding="utf-8")
    for name in sorted(COMMAND_TYPES | EVENT_TYPES):
        assert f"### `{name}`" in text or f"`{name}` /" in text or f"/ `{name}`" in text, name
