"""Every message the adapter sends, checked against the one ACP schema definition it must match.

The schemas are ACP v1's, from ``@agentclientprotocol/sdk`` 2.4.0: the stable one
(``schema/acp-schema.json``), which is the contract, and the full one with the
unstable additions (``schema/acp-schema.unstable.json``). Every message must match
both: the stable schema decides which methods exist (an unstable method is an
unknown one, except the few in :data:`ADOPTED_UNSTABLE`), and the full schema
checks the unstable members the adapter sends anyway (the prompt's ``usage``),
which the stable one lets through unchecked. An adopted method's messages are
checked against the full schema only: the stable one does not define them.

The schemas mark each method's definitions with ``x-method`` and ``x-side`` (who
handles it), so a message is validated against its own definition, not the union
of all of them:

- a request the agent sends (``fs/*``, ``terminal/*``,
  ``session/request_permission``): its params against the method's ``x-side:
  client`` request definition;
- a notification the agent sends (``session/update``): against the notification
  definition;
- a response to a client request: the request must be one the client sent and
  still waits on; its result against that method's response definition (``x-side:
  agent``), its error against ``Error``. An error with a null id answers a line
  whose id could not be read (not JSON, not an object).

Each message is also checked against the envelope (``AgentRequest``,
``AgentResponse``, ``AgentNotification``), with ``"jsonrpc": "2.0"``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).parent / "schema" / "acp-schema.json"
UNSTABLE_SCHEMA_PATH = SCHEMA_PATH.with_name("acp-schema.unstable.json")
SCHEMA_PATHS = (SCHEMA_PATH, UNSTABLE_SCHEMA_PATH)


@cache
def _schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


@cache
def _validator(definition: str, path: Path) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/$defs/{definition}", "$defs": _schema(path)["$defs"]})


# Unstable methods the adapter implements on purpose (and advertises); any other
# unstable method is an unknown one.
ADOPTED_UNSTABLE: frozenset[str] = frozenset({"session/fork"})


@cache
def definitions(side: str) -> dict[str, dict[str, str]]:
    """``method → {"params": def, "result": def}`` of the stable methods *side* handles
    (the protocol's own, ``$/cancel_request``, either side does), and of the
    :data:`ADOPTED_UNSTABLE` ones."""
    table: dict[str, dict[str, str]] = {}
    for path in SCHEMA_PATHS:
        for name, definition in _schema(path)["$defs"].items():
            method = definition.get("x-method")
            if definition.get("x-side") not in (side, "protocol") or not isinstance(method, str):
                continue
            if path != SCHEMA_PATH and method not in ADOPTED_UNSTABLE:
                continue
            role = "result" if name.endswith("Response") else "params"
            table.setdefault(method, {})[role] = name
    return table


def problems(definition: str, value: object) -> list[str]:
    """Why *value* does not match ``$defs/<definition>`` of each schema that defines it
    (empty when it does; a problem the two share is named once). An unstable type
    (``Usage``) is only in the full schema."""
    found: dict[str, None] = {}
    paths = [path for path in SCHEMA_PATHS if definition in _schema(path)["$defs"]]
    if not paths:
        return [f"no ACP v1 definition {definition!r}"]
    for path in paths:
        for error in _validator(definition, path).iter_errors(value):
            where = "/".join(map(str, error.absolute_path)) or "(root)"
            found[f"{definition} at {where}: {error.message}"] = None
    return list(found)


class Conformance:
    """Checks the agent's side of one connection, message by message.

    Tell it what the client sent (:meth:`client_sent`), so it knows which request a
    response answers; :meth:`check` raises ``AssertionError`` naming every problem.
    """

    def __init__(self) -> None:
        self.pending: dict[str, str] = {}  # the client's unanswered requests: id → method
        self.checked = 0

    def client_sent(self, message: object) -> None:
        if isinstance(message, dict) and "method" in message and "id" in message:
            self.pending[json.dumps(message["id"])] = str(message["method"])

    def client_sent_garbage(self, reply_id: object = None) -> None:
        """The client sent a line that is no usable request: an error answers it, under
        *reply_id* (``None``: null, when the id could not be read)."""
        self.pending[json.dumps(reply_id)] = ""

    def check(self, message: dict[str, Any]) -> None:
        found: list[str] = []
        if message.get("jsonrpc") != "2.0":
            found.append('"jsonrpc" is not "2.0"')
        method = message.get("method")
        if isinstance(method, str):
            kind = "request" if "id" in message else "notification"
            params = definitions("client").get(method, {}).get("params")
            if params is None:
                found.append(f"unknown agent → client method {method!r}")
            else:
                if params.endswith("Notification") != (kind == "notification"):
                    found.append(f"{method} sent as a {kind}")
                found += problems(params, message.get("params"))
            envelope = "AgentRequest" if kind == "request" else "AgentNotification"
        else:
            envelope = "AgentResponse"
            answered = self.pending.pop(json.dumps(message.get("id")), None)
            if answered is None and message.get("id") is None and "error" in message:
                answered = ""  # the answer to a line whose id could not be read
            if answered is None:
                found.append(f"response to id {message.get('id')!r}, which no request waits on")
            elif "error" in message:
                found += problems("Error", message["error"])
            elif not answered:
                found.append("a line that was no request got a result, not an error")
            else:
                result = definitions("agent").get(answered, {}).get("result")
                if result is None:
                    found.append(f"no response definition for {answered!r}")
                else:
                    found += problems(result, message.get("result"))
        found += problems(envelope, message)
        assert not found, f"{json.dumps(message)[:400]}: " + "; ".join(found)
        self.checked += 1
