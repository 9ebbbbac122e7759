"""The wire protocol as JSON Schema (draft 2020-12), generated from the codec's declarations.

Every command, event, ack and ephemeral frame is described by the same
:class:`~._codec.Record` that encodes and decodes it, so the schema cannot drift
from the code. ``docs/protocol.schema.json`` is this schema, checked in
(``agent-runtime schema`` prints it; ``tests/server/test_schema.py`` keeps the two
equal). What "required" means depends on who sends the message: for a client's
message (a command, ``hello``), what the server insists on; for the server's, what
it always sends.
"""

from __future__ import annotations

import json
from typing import Any, Final

from sessions import JSON, JSONObject

from ._codec import _CONSTANT, _NULLABLE, _OPTIONAL, _REQUIRED, Field, OneOf, PresentIff, Record
from ._commands import ACK, COMMANDS
from ._events import EVENTS, TOOL_CALL_INFO, USAGE_TOTALS
from ._frames import CLIENT_FRAMES, SERVER_FRAMES, SESSION_VIEW

DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

# docs/protocol.md "Envelope of a durable event": before the payload of every event.
_ENVELOPE: Final[JSONObject] = {
    "seq": {"type": "integer", "minimum": 1, "description": "position in the session's log"},
    "session_id": {"type": "string"},
    "type": {"type": "string"},
    "ts": {"type": "number", "description": "commit time, seconds since the Unix epoch"},
    "turn_id": {"type": "string", "description": "absent on user.message"},
    "subtask_id": {"type": "string", "description": "on events of a delegated subtask"},
}
_ENVELOPE_REQUIRED: Final = ("seq", "session_id", "type", "ts")


def _description(cls: type) -> str | None:
    doc = cls.__doc__
    if not doc or doc.startswith(cls.__name__ + "("):  # attrs' generated signature
        return None
    return " ".join(doc.strip().split("\n\n")[0].split())


def _with_null(schema: JSONObject) -> JSONObject:
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    enum = schema.get("enum")
    if isinstance(enum, list):
        return {**schema, "enum": [*enum, None]}
    return {"anyOf": [schema, {"type": "null"}]}


def _property(f: Field) -> JSONObject:
    schema = dict(f.shape.schema)
    if f.sends_null and not f.shape.null_ok:
        schema = _with_null(schema)
    default: Any = f.default
    if f.mode == _OPTIONAL and isinstance(default, str | int | float | bool | tuple):
        schema["default"] = list(default) if isinstance(default, tuple) else default
    return schema


def _always_sent(f: Field) -> bool:
    if f.mode in (_REQUIRED, _NULLABLE, _CONSTANT):
        return True
    has_default = f.default is not None or f.factory is not None
    return f.mode == _OPTIONAL and has_default and not f.omit_empty


def _rule(rule: PresentIff | OneOf) -> JSONObject:
    if isinstance(rule, PresentIff):
        return {
            "if": {"properties": {rule.on: {"const": rule.value}}, "required": [rule.on]},
            "then": {"required": [rule.key]},
            "else": {"not": {"required": [rule.key]}},
        }
    return {"oneOf": [{"required": [key]} for key in rule.keys]}


def _object(
    rec: Record[Any], *, sent_by_client: bool, tagged: bool = True, envelope: bool = False
) -> JSONObject:
    properties: JSONObject = dict(_ENVELOPE) if envelope else {}
    required: list[JSON] = list(_ENVELOPE_REQUIRED) if envelope else []
    if tagged:
        properties["type"] = {"const": rec.type}
        if not envelope:
            required.append("type")
    governed = {r.key for r in rec.rules if isinstance(r, PresentIff)}
    governed |= {key for r in rec.rules if isinstance(r, OneOf) for key in r.keys}
    for f in rec.fields:
        properties[f.key] = _property(f)
        if f.key in governed:
            continue
        if f.mode == _REQUIRED or f.must_send or (not sent_by_client and _always_sent(f)):
            required.append(f.key)
    out: JSONObject = {"type": "object"}
    description = _description(rec.cls)
    if description:
        out["description"] = description
    out["properties"] = properties
    out["required"] = required
    if rec.closed:
        out["additionalProperties"] = False
    if rec.rules:
        out["allOf"] = [_rule(rule) for rule in rec.rules]
    if tagged and not envelope and not sent_by_client:
        out["not"] = {"required": ["seq"]}  # ephemeral: only durable events have a seq
    return out


def _refs(records: tuple[Record[Any], ...]) -> list[JSON]:
    return [{"$ref": f"#/$defs/{rec.cls.__name__}"} for rec in records]


def protocol_schema() -> JSONObject:
    """The JSON Schema of every message of docs/protocol.md (commands, events, frames)."""
    defs: JSONObject = {}
    for nested in (TOOL_CALL_INFO, USAGE_TOTALS, SESSION_VIEW):
        defs[nested.cls.__name__] = _object(nested, sent_by_client=False, tagged=False)
    for rec in COMMANDS.records + CLIENT_FRAMES:
        defs[rec.cls.__name__] = _object(rec, sent_by_client=True)
    for rec in EVENTS.records:
        defs[rec.cls.__name__] = _object(rec, sent_by_client=False, envelope=True)
    for rec in (ACK, *SERVER_FRAMES):
        defs[rec.cls.__name__] = _object(rec, sent_by_client=False)
    defs["Command"] = {"oneOf": _refs(COMMANDS.records)}
    defs["Event"] = {"oneOf": _refs(EVENTS.records)}
    defs["ClientMessage"] = {"anyOf": [{"$ref": "#/$defs/Command"}, *_refs(CLIENT_FRAMES)]}
    defs["ServerMessage"] = {"anyOf": [{"$ref": "#/$defs/Event"}, *_refs((ACK, *SERVER_FRAMES))]}
    return {
        "$schema": DIALECT,
        "$id": "urn:agent-runtime:protocol",
        "title": "agent-runtime wire protocol",
        "description": "Every JSON message of docs/protocol.md: a client's (Command, Hello) or"
        " the server's (Event, Ack, Sync, Heartbeat, ErrorFrame). Generated from the codec's"
        " declarations by `agent-runtime schema`; do not edit by hand.",
        "anyOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"}],
        "$defs": defs,
    }


def protocol_schema_text() -> str:
    """:func:`protocol_schema` as the text of docs/protocol.schema.json."""
    return json.dumps(protocol_schema(), indent=2, ensure_ascii=False) + "\n"
