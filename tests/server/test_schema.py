"""docs/protocol.schema.json: generated from the codec, and true of every message.

The schema is checked in; these tests keep it equal to what the codec generates,
and check it against the protocol doc's examples, against hypothesis-generated
events and commands, and against invalid variants that must not validate.
(``tests/server/helpers.py`` also validates every frame the live WebSocket tests
receive.)
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from jsonschema import Draft202012Validator

from agents import AgentEvent, encode_event
from agents._core._schema import protocol_schema, protocol_schema_text
from agents.commands import Command, encode_command
from server._cli import main
from tests.agents.test_commands import commands
from tests.agents.test_events import events
from tests.server.test_protocol_doc import EXAMPLES, kind

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "protocol.schema.json"
SCHEMA = protocol_schema()
VALIDATOR = Draft202012Validator(SCHEMA)


def validator_of(name: str) -> Draft202012Validator:
    """A validator of the definition *name* alone (so a match elsewhere cannot hide a miss)."""
    return Draft202012Validator({**SCHEMA, "anyOf": [{"$ref": f"#/$defs/{name}"}]})


EVENT = validator_of("Event")
COMMAND = validator_of("Command")
SERVER_MESSAGE = validator_of("ServerMessage")  # what tests/server/helpers.py checks


def envelope(ev: AgentEvent) -> dict[str, Any]:
    type_, payload = encode_event(ev)
    return {"seq": 3, "session_id": "ses_1", "type": type_, "ts": 1.5, "turn_id": "t", **payload}


def test_the_checked_in_schema_is_the_generated_one() -> None:
    # Regenerate with: agent-runtime schema > docs/protocol.schema.json
    assert SCHEMA_FILE.read_text(encoding="utf-8") == protocol_schema_text()
    Draft202012Validator.check_schema(SCHEMA)


def test_the_schema_verb_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == SCHEMA


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{kind(e)}:{e['type']}")
def test_every_doc_example_validates(example: dict[str, Any]) -> None:
    name = {"event": "Event", "command": "Command", "ack": "Ack", "hello": "Hello"}
    definition = name.get(kind(example), kind(example).capitalize())
    if kind(example) == "error":
        definition = "ErrorFrame"
    validator_of(definition).validate(example)
    VALIDATOR.validate(example)


@given(events)
def test_generated_events_validate(ev: AgentEvent) -> None:
    EVENT.validate(envelope(ev))


@given(commands)
def test_generated_commands_validate(cmd: Command) -> None:
    COMMAND.validate(encode_command(cmd))


DEFS: dict[str, Any] = dict(SCHEMA["$defs"])  # type: ignore[arg-type]


def _required(definition: str) -> list[str]:
    return [str(key) for key in DEFS[definition]["required"]]


DOC_EVENTS = [e for e in EXAMPLES if kind(e) == "event"]
DOC_COMMANDS = [e for e in EXAMPLES if kind(e) == "command"]


def _definition(example: dict[str, Any]) -> str:
    for name, schema in DEFS.items():
        tag = schema.get("properties", {}).get("type", {}).get("const")
        if tag == example["type"] and ("seq" in example) == ("seq" in schema.get("required", [])):
            return name
    raise AssertionError(f"no definition for {example['type']}")


def _variants(example: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """*example* without each required field, and with each field of the wrong JSON type."""
    name = _definition(example)
    out = []
    for key in _required(name):
        broken = copy.deepcopy(example)
        del broken[key]
        out.append((f"{name} without {key}", broken))
    for key, value in example.items():
        if key == "type" or DEFS[name]["properties"].get(key) in ({}, None):
            continue  # any JSON value is fine there, or the key is an extra
        broken = copy.deepcopy(example)
        broken[key] = [] if not isinstance(value, list) else "a string"
        out.append((f"{name} with a wrong {key}", broken))
    return out


VARIANTS = [v for e in [*DOC_EVENTS, *DOC_COMMANDS] for v in _variants(e)]


@pytest.mark.parametrize(("what", "broken"), VARIANTS, ids=[what for what, _ in VARIANTS])
def test_invalid_variants_do_not_validate(what: str, broken: dict[str, Any]) -> None:
    # Checked against its own kind: an `error` event without its seq is a fine error frame.
    assert not (EVENT if "seq" in _required(what.split()[0]) else COMMAND).is_valid(broken)


def test_cross_field_rules_and_closed_commands() -> None:
    approval = {"type": "approval", "id": "c", "call_id": "k", "decision": "edit"}
    assert not COMMAND.is_valid(approval)  # edit requires arguments
    assert COMMAND.is_valid({**approval, "arguments": {}})
    assert not COMMAND.is_valid({**approval, "decision": "approve", "arguments": {}})
    result = {"type": "tool_result", "id": "c", "call_id": "k"}
    assert not COMMAND.is_valid(result)  # exactly one of result / error
    assert COMMAND.is_valid({**result, "result": None})
    assert not COMMAND.is_valid({**result, "result": 1, "error": "e"})
    assert not COMMAND.is_valid({"type": "cancel", "id": "c", "turn": "t"})  # a typo
    assert not COMMAND.is_valid({"type": "cancel", "id": ""})
    # Events are open (clients ignore unknown fields); ephemeral frames have no seq.
    delta = {"seq": 1, "session_id": "s", "type": "text.delta", "ts": 1.0, "message_id": "m"}
    assert EVENT.is_valid({**delta, "text": "t", "subtask_id": "sub_1", "new": 1})
    frame = {"type": "error", "code": "bad_json", "message": "m"}
    assert validator_of("ErrorFrame").is_valid(frame)
    assert not validator_of("ErrorFrame").is_valid({**frame, "seq": 1})
