"""JSON-RPC 2.0 for ACP, sans I/O: parsing one line, the error codes, encoders, our ids."""

from __future__ import annotations

import json

import pytest

from server.acp._jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RESOURCE_NOT_FOUND,
    Malformed,
    Notification,
    OutboundIds,
    Request,
    Response,
    RpcError,
    encode_error,
    encode_notification,
    encode_request,
    encode_result,
    parse_line,
)


def malformed(line: str | bytes) -> Malformed:
    message = parse_line(line)
    assert isinstance(message, Malformed), message
    return message


def test_the_error_codes_are_json_rpc_s_and_acp_s() -> None:
    assert (PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR) == (
        -32700,
        -32600,
        -32601,
        -32602,
        -32603,
    )
    assert RESOURCE_NOT_FOUND == -32002


@pytest.mark.parametrize("line", ["", "   ", "\r", b"\n"])
def test_blank_lines_are_nothing(line: str | bytes) -> None:
    assert parse_line(line) is None


@pytest.mark.parametrize(
    "line", ["not json", "{", '{"a": NaN}', "Infinity", b"\xff\xfe\x00", "1" * 5000]
)
def test_text_that_is_not_json_is_a_parse_error_with_a_null_id(line: str | bytes) -> None:
    message = malformed(line)
    assert (message.id, message.error.code) == (None, PARSE_ERROR)


@pytest.mark.parametrize(
    ("line", "echoed"),
    [
        ("[]", None),  # a batch: ACP sends none
        ('[{"jsonrpc": "2.0", "id": 1, "method": "initialize"}]', None),
        ('"initialize"', None),
        ("42", None),
        ('{"id": 3, "method": "initialize"}', 3),  # no "jsonrpc"
        ('{"jsonrpc": "1.0", "id": "a", "method": "initialize"}', "a"),
        ('{"jsonrpc": "2.0", "id": 4, "method": 7}', 4),
        ('{"jsonrpc": "2.0", "id": 5, "method": "x", "params": "scalar"}', 5),
        ('{"jsonrpc": "2.0", "id": 1.5, "method": "initialize"}', None),
        ('{"jsonrpc": "2.0", "id": true, "method": "initialize"}', None),
        ('{"jsonrpc": "2.0", "id": {"a": 1}, "method": "initialize"}', None),
        ('{"jsonrpc": "2.0", "id": 6}', 6),  # neither a request nor a response
        ('{"jsonrpc": "2.0", "id": 7, "method": "x", "params": {"t": "\\ud800"}}', 7),
        ('{"jsonrpc": "2.0", "id": 8, "method": "x", "params": [' + "[" * 80 + "]" * 80 + "]}", 8),
        ('{"jsonrpc": "2.0", "id": 9, "method": "x", "params": {"n": 100000000000000000000}}', 9),
        ('{"jsonrpc": "2.0", "id": 10, "method": "x", "method": "y"}', 10),  # a key twice
        ('{"jsonrpc": "2.0", "id": 11, "method": "x", "params": {"cwd": "/a", "cwd": "/b"}}', 11),
        ('{"jsonrpc": "2.0", "id": 12, "id": 13, "method": "x"}', 13),  # which is unclear
        # The repeated key ends the parse early; what follows is not JSON: no id to echo.
        ('{"jsonrpc": "2.0", "id": 14, "params": {"a": 1, "a": 2}, nonsense', None),
    ],
)
def test_json_that_is_no_request_is_an_invalid_request(line: str, echoed: object) -> None:
    message = malformed(line)
    assert (message.id, message.error.code) == (echoed, INVALID_REQUEST)
    reply = json.loads(message.reply())
    assert reply == {"jsonrpc": "2.0", "id": echoed, "error": message.error.to_json()}


@pytest.mark.parametrize("request_id", [0, 17, "abc", None])
def test_requests_keep_their_id(request_id: object) -> None:
    line = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "m", "params": {"a": 1}})
    assert parse_line(line) == Request(request_id, "m", {"a": 1})  # type: ignore[arg-type]


def test_notifications_have_no_id() -> None:
    line = '{"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": "s"}}'
    assert parse_line(line) == Notification("session/cancel", {"sessionId": "s"})
    assert parse_line('{"jsonrpc": "2.0", "method": "n", "params": null}') == Notification("n")
    assert parse_line('{"jsonrpc": "2.0", "method": "n"}') == Notification("n")


def test_responses_carry_a_result_or_an_error() -> None:
    assert parse_line('{"jsonrpc": "2.0", "id": 1, "result": null}') == Response(1, None)
    assert parse_line('{"jsonrpc": "2.0", "id": 2, "result": {"content": "x"}}') == Response(
        2, {"content": "x"}
    )
    message = parse_line(
        '{"jsonrpc": "2.0", "id": 3, "error": {"code": -32002, "message": "gone", "data": [1]}}'
    )
    assert isinstance(message, Response) and message.valid and message.error is not None
    assert (message.id, message.error.code, message.error.message) == (3, -32002, "gone")
    assert message.error.data == [1]


@pytest.mark.parametrize(
    ("line", "request_id"),
    [
        ('{"jsonrpc": "2.0", "id": 1, "result": 1, "error": {"code": 1, "message": "m"}}', 1),
        ('{"jsonrpc": "2.0", "id": 2, "error": "boom"}', 2),
        ('{"jsonrpc": "2.0", "id": 3, "error": {"message": "no code"}}', 3),
        ('{"jsonrpc": "2.0", "id": 4, "error": {"code": 1.5, "message": "m"}}', 4),
        ('{"id": 5, "result": {}}', 5),  # no "jsonrpc"
        ('{"jsonrpc": "2.0", "result": {}}', None),  # no id
        ('{"jsonrpc": "2.0", "id": 1.5, "result": {}}', None),
        ('{"jsonrpc": "2.0", "id": 6, "result": {"content": "\\udc00"}}', 6),
        ('{"jsonrpc": "2.0", "id": 7, "result": {"outcome": "a", "outcome": "b"}}', 7),
    ],
)
def test_invalid_responses_are_never_answered(line: str, request_id: object) -> None:
    """A broken response is still a response: it fails its request, or is dropped."""
    message = parse_line(line)
    assert isinstance(message, Response) and not message.valid
    assert message.id == request_id
    assert message.error is not None and message.error.code == INTERNAL_ERROR


def test_encoders_write_one_line_each() -> None:
    error = RpcError(INVALID_PARAMS, "bad\nparams", {"field": "cwd"})
    lines = [
        encode_result(1, {"text": "a\nb"}),
        encode_error(None, error),
        encode_request(0, "fs/read_text_file", {"path": "/x"}),
        encode_notification("session/update", {"sessionId": "s", "update": {}}),
    ]
    assert all("\n" not in line for line in lines)
    assert [json.loads(line) for line in lines] == [
        {"jsonrpc": "2.0", "id": 1, "result": {"text": "a\nb"}},
        {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32602, "message": "bad\nparams", "data": {"field": "cwd"}},
        },
        {"jsonrpc": "2.0", "id": 0, "method": "fs/read_text_file", "params": {"path": "/x"}},
        {"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": "s", "update": {}}},
    ]
    assert RpcError(INTERNAL_ERROR, "x").to_json() == {"code": -32603, "message": "x"}
    assert parse_line(lines[2]) == Request(0, "fs/read_text_file", {"path": "/x"})


def test_our_ids_match_their_responses_once() -> None:
    ids = OutboundIds()
    first, second = ids.issue("fs/read_text_file"), ids.issue("terminal/create")
    assert (first, second) == (0, 1)
    assert len(ids) == 2
    assert ids.match(Response(1, {})) == "terminal/create"
    assert ids.match(Response(1, {})) is None  # answered already
    assert ids.match(Response("0", {})) is None  # not an id we issued
    assert ids.match(Response(7, {})) is None
    assert ids.issued(1) and not ids.issued(7) and not ids.issued("0")
    ids.forget(first)  # abandoned: its late answer matches nothing
    assert ids.match(Response(0, {})) is None
    assert ids.issue("x") == 2  # never reused
