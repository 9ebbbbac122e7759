"""JSON-RPC 2.0 for ACP, sans I/O: one line in, one message out; encoders; our request ids.

ACP frames JSON-RPC as newline-delimited JSON, one message per line. This module
knows nothing of streams or tasks, so every rule below is testable with strings:

- :func:`parse_line` turns one line into a :class:`Request`, :class:`Notification`,
  :class:`Response` or :class:`Malformed` (blank lines are ``None``). It never
  raises: bad input becomes the error the peer must be told (``-32700`` for text
  that is not JSON, ``-32600`` for JSON that is not a request, a batch included:
  ACP sends none, so arrays are refused), with the request's id echoed whenever
  it could be read. Values no layer below may meet (lone surrogates, integers
  beyond 64 bits, nesting past 64 levels: ``-32600``; NaN and Infinity, which
  are not JSON: ``-32700``) are refused at this boundary, as the WebSocket
  transport refuses them (``server/_json_input.py``).
- A response whose shape is wrong is still a :class:`Response` (``valid`` false),
  so the caller can fail the request it answers, or log and drop it when it
  answers nothing we sent: a response never gets a reply.
- :class:`OutboundIds` numbers the requests *we* send (0, 1, 2, ...) and matches
  responses back to them; an id it did not issue, or one already answered or
  abandoned, matches nothing.

``-32601`` (method not found) and ``-32602`` (invalid params) are the dispatcher's
to decide; their codes live here with the others.
"""

from __future__ import annotations

import json
from typing import Final, TypeAlias, TypeGuard

from attrs import frozen

from sessions import JSON, JSONObject, dumps

from .._errors import ApiError
from .._json_input import DuplicateKey, unique_keys, vet_json

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
# ACP's own code for "a given resource was not found" (here: a session).
RESOURCE_NOT_FOUND: Final = -32002

RequestId: TypeAlias = str | int | None


class RpcError(Exception):
    """A JSON-RPC error object: what a failed request is answered with."""

    def __init__(self, code: int, message: str, data: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> JSONObject:
        out: JSONObject = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out

    def __repr__(self) -> str:
        return f"RpcError({self.code}, {self.message!r})"


@frozen
class Request:
    """A call that must be answered with the same ``id``."""

    id: RequestId
    method: str
    params: JSON | None = None


@frozen
class Notification:
    """A call that is never answered."""

    method: str
    params: JSON | None = None


@frozen
class Response:
    """An answer to a request (ours, if :class:`OutboundIds` knows its id).

    Exactly one of *result* / *error* is meaningful: *error* is set for an error
    response and for an invalid one (``valid`` false), whose *error* says what
    was wrong with it.
    """

    id: RequestId
    result: JSON | None = None
    error: RpcError | None = None
    valid: bool = True


@frozen
class Malformed:
    """A line that is no usable message; *error* goes back with *id* (``None``: null)."""

    id: RequestId
    error: RpcError

    def reply(self) -> str:
        return encode_error(self.id, self.error)


Message: TypeAlias = Request | Notification | Response | Malformed


def _not_json(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _valid_id(value: object) -> TypeGuard[RequestId]:
    return value is None or isinstance(value, str) or type(value) is int


def parse_line(line: str | bytes) -> Message | None:
    """The message on *line* (without or with its newline); ``None`` for a blank line.

    Never raises.
    """
    if not line.strip():
        return None
    refused: str | None = None
    try:
        value: JSON = json.loads(line, parse_constant=_not_json, object_pairs_hook=unique_keys)
    except RecursionError:
        return Malformed(None, RpcError(INVALID_REQUEST, "the message nests too deep"))
    except DuplicateKey as error:
        refused, value = f"message: {error}", _last_key_wins(line)
    except ValueError as error:  # UnicodeDecodeError included
        return Malformed(None, RpcError(PARSE_ERROR, f"not valid JSON: {error}"))
    if refused is None:
        try:
            vet_json(value, "message")
        except ApiError as error:
            refused = error.message
    if refused is not None:
        if not isinstance(value, dict):
            return Malformed(None, RpcError(INVALID_REQUEST, refused))
        raw = value.get("id")
        echo = raw if _valid_id(raw) else None
        if _is_response(value):  # never answered: the request it answers fails instead
            return Response(echo, error=RpcError(INTERNAL_ERROR, refused), valid=False)
        return Malformed(echo, RpcError(INVALID_REQUEST, refused))
    if isinstance(value, list):
        return Malformed(None, RpcError(INVALID_REQUEST, "batch requests are not supported"))
    if not isinstance(value, dict):
        return Malformed(None, RpcError(INVALID_REQUEST, "a message is a JSON object"))
    raw_id = value.get("id")
    echo = raw_id if _valid_id(raw_id) else None
    if _is_response(value):
        # Never answered, even when broken: the caller fails or drops it.
        return _response(value, echo)
    if value.get("jsonrpc") != "2.0":
        return Malformed(echo, RpcError(INVALID_REQUEST, 'field "jsonrpc" must be "2.0"'))
    if "method" in value:
        return _call(value, echo)
    return Malformed(echo, RpcError(INVALID_REQUEST, 'a request needs a string "method"'))


def _last_key_wins(line: str | bytes) -> JSON:
    """*line* parsed as Python would, only to learn the id a refusal answers.

    ``None`` if that fails too: the repeated key stopped the first parse early,
    so the rest of the line may not be JSON at all, or nest too deep.
    """
    try:
        value: JSON = json.loads(line, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return None
    return value


def _is_response(value: JSONObject) -> bool:
    return "method" not in value and ("result" in value or "error" in value)


def _call(value: JSONObject, echo: RequestId) -> Message:
    method = value["method"]
    if not isinstance(method, str):
        return Malformed(echo, RpcError(INVALID_REQUEST, 'field "method" must be a string'))
    params = value.get("params")
    if params is not None and not isinstance(params, dict | list):
        return Malformed(echo, RpcError(INVALID_REQUEST, 'field "params" must be an object'))
    if "id" not in value:
        return Notification(method, params)
    if not _valid_id(value["id"]):
        return Malformed(
            None, RpcError(INVALID_REQUEST, 'field "id" must be a string, an integer or null')
        )
    return Request(echo, method, params)


def _response(value: JSONObject, echo: RequestId) -> Response:
    def invalid(why: str) -> Response:
        return Response(
            echo, error=RpcError(INTERNAL_ERROR, f"invalid response: {why}"), valid=False
        )

    if value.get("jsonrpc") != "2.0":
        return invalid('field "jsonrpc" must be "2.0"')
    if "id" not in value or not _valid_id(value["id"]):
        return invalid('no usable "id"')
    if "result" in value and "error" in value:
        return invalid('both "result" and "error"')
    if "result" in value:
        return Response(echo, result=value["result"])
    error = value["error"]
    if not isinstance(error, dict):
        return invalid('"error" is not an object')
    code, message = error.get("code"), error.get("message")
    if type(code) is not int or not isinstance(message, str):
        return invalid('"error" needs an integer "code" and a string "message"')
    return Response(echo, error=RpcError(code, message, error.get("data")))


# -- encoders (each returns one line of JSON text, without the newline) ------------


def encode_result(request_id: RequestId, result: JSON) -> str:
    return dumps({"jsonrpc": "2.0", "id": request_id, "result": result})


def encode_error(request_id: RequestId, error: RpcError) -> str:
    return dumps({"jsonrpc": "2.0", "id": request_id, "error": error.to_json()})


def encode_request(request_id: int, method: str, params: JSONObject) -> str:
    return dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})


def encode_notification(method: str, params: JSONObject) -> str:
    return dumps({"jsonrpc": "2.0", "method": method, "params": params})


class OutboundIds:
    """Ids of the requests we sent that still wait for their response.

    Ours are integers counting up from 0, never reused, so a late answer to an
    abandoned request cannot be taken for the answer to a newer one.
    """

    def __init__(self) -> None:
        self._next = 0
        self._pending: dict[int, str] = {}

    def issue(self, method: str) -> int:
        """A fresh id for a request of *method*, now pending."""
        request_id = self._next
        self._next += 1
        self._pending[request_id] = method
        return request_id

    def match(self, response: Response) -> str | None:
        """The method of the pending request *response* answers (no longer pending), or
        ``None`` when it answers nothing we wait for."""
        if type(response.id) is not int:
            return None
        return self._pending.pop(response.id, None)

    def issued(self, request_id: RequestId) -> bool:
        """Whether *request_id* is one of ours (pending, answered or abandoned)."""
        return type(request_id) is int and 0 <= request_id < self._next

    def forget(self, request_id: int) -> None:
        """Stop waiting for *request_id* (abandoned): its answer will match nothing."""
        self._pending.pop(request_id, None)

    def __len__(self) -> int:
        return len(self._pending)
