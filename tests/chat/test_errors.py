"""The chat client's errors: what the user reads when something is wrong, and exit statuses.

Every failure must end in one line the user can act on, never a traceback.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
import trio

from server import client
from server.chat import ChatOptions, UsageError, chat_parser, options_from_args, run_chat
from server.chat._link import ChatError, ServerBusy, check_response
from server.client import describe_error
from sessions import JSON
from tests.chat.test_client import chat, options
from tests.server.helpers import LiveServer


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


async def test_bad_token_unknown_session_and_missing_token(server: LiveServer, root: Path) -> None:
    code, out = await chat(options(server.url, root, token="wrong", message="hi"))
    assert code == 1
    assert "refused the token" in out
    code, out = await chat(options(server.url, root, session="ses_nope", message="hi"))
    assert code == 1
    assert "no session 'ses_nope'" in out
    assert "omit --session to start a new one" in out
    assert "[session" not in out  # checked before the banner claims it
    code, out = await chat(options(server.url, root, token=None, message="hi"))
    assert code == 2
    assert "token is required" in out


async def test_unreachable_server_gives_up(root: Path) -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens on that port now
    url = f"http://127.0.0.1:{port}"
    code, out = await chat(options(url, root, session="ses_x", message="hi", attempts=2))
    assert code == 1
    assert out.startswith(f"agent-runtime chat: cannot reach the server at {url}: ")
    assert out.count(f"all attempts to connect to 127.0.0.1:{port} failed") == 1, out
    assert "is `agent-runtime serve` running there?" in out
    assert "[session" not in out


async def test_unknown_agent_shows_the_servers_message(server: LiveServer, root: Path) -> None:
    code, out = await chat(options(server.url, root, agent="nosuch", message="hi"))
    assert code == 1
    assert out.startswith("agent-runtime chat: unknown agent 'nosuch'"), out
    assert "(HTTP 400 " in out
    assert "[session" not in out


def test_http_errors_worth_waiting_for_are_retryable() -> None:
    busy = {"error": {"code": "rate_limited", "message": "slow down"}}
    with pytest.raises(ServerBusy, match=r"slow down \(HTTP 429 rate_limited\)"):
        check_response(httpx.Response(429, json=busy))
    with pytest.raises(httpx.TransportError, match=r"Bad Gateway \(HTTP 502\)"):
        check_response(httpx.Response(502, text="<html>"))


def test_the_chat_checks_answers_with_the_librarys_check() -> None:
    assert ServerBusy is client.ServerBusy  # one class: whatever retries one retries both
    with pytest.raises(ChatError) as info:
        check_response(httpx.Response(404, json={"error": {"code": "not_found"}}), "ses_x")
    assert str(info.value) == (
        "no session 'ses_x' for this token (HTTP 404 not_found); omit --session to start a new one"
    )


def test_an_answer_from_another_server_says_so_and_is_not_retried() -> None:
    request = httpx.Request("POST", "http://127.0.0.1:9/prefix/v1/sessions")
    for status, reason in [(404, "Not Found"), (501, "Not Implemented")]:
        with pytest.raises(ChatError) as info:
            check_response(httpx.Response(status, text="<html>", request=request))
        assert str(info.value) == (
            f"POST http://127.0.0.1:9/prefix/v1/sessions answered HTTP {status} {reason}; "
            "is it an agent-runtime server? (check --url)"
        )
    # The server's own 404 for an endpoint it lacks: no advice about --session.
    endpoint = {"error": {"code": "not_found", "message": "no such endpoint: POST /x"}}
    with pytest.raises(ChatError) as info:
        check_response(httpx.Response(404, json=endpoint, request=request))
    assert str(info.value) == "no such endpoint: POST /x (HTTP 404 not_found); check --url"


def test_an_error_is_described_once() -> None:
    try:
        try:
            raise OSError("all attempts to connect to 127.0.0.1:9 failed")
        except OSError as cause:
            raise httpx.ConnectError(str(cause)) from cause
    except httpx.ConnectError as error:
        assert describe_error(error) == "all attempts to connect to 127.0.0.1:9 failed"
    try:
        try:
            raise OSError("connection refused")
        except OSError as cause:
            raise httpx.ConnectError("handshake failed") from cause
    except httpx.ConnectError as error:
        assert describe_error(error) == "handshake failed (connection refused)"
    # https:// to a plain HTTP server: only the innermost error says anything.
    try:
        try:
            try:
                raise ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
            except ssl.SSLError as tls:
                raise trio.BrokenResourceError from tls
        except trio.BrokenResourceError as broken:
            raise httpx.ConnectError("") from broken
    except httpx.ConnectError as error:
        assert describe_error(error) == "[SSL: WRONG_VERSION_NUMBER] wrong version number"
    assert describe_error(httpx.ConnectError("")) == "ConnectError"


def parsed(argv: list[str], env: dict[str, str]) -> ChatOptions:
    return options_from_args(chat_parser().parse_args(argv), env)


def test_an_empty_message_is_a_usage_error() -> None:
    for empty in ["", "  \n"]:
        with pytest.raises(UsageError, match="--message is empty"):
            parsed(["-m", empty], {})
    assert parsed(["-m", " hi "], {}).message == " hi "


def test_command_timeout_from_flag_and_environment() -> None:
    assert parsed([], {}).command_timeout == 60
    assert parsed([], {"AGENT_RUNTIME_COMMAND_TIMEOUT": "600"}).command_timeout == 600
    flag = ["--command-timeout", "1.5"]
    assert parsed(flag, {"AGENT_RUNTIME_COMMAND_TIMEOUT": "600"}).command_timeout == 1.5
    with pytest.raises(UsageError, match=r"AGENT_RUNTIME_COMMAND_TIMEOUT: '-1' is not a positive"):
        parsed([], {"AGENT_RUNTIME_COMMAND_TIMEOUT": "-1"})


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            {"error": {"code": "unknown_agent", "message": "unknown agent 'x'"}},
            "unknown agent 'x' (HTTP 400 unknown_agent)",
        ),
        (
            413,
            {"error": {"code": "too_large", "message": "body over 1 MiB"}},
            "body over 1 MiB (HTTP 413 too_large)",
        ),
        (
            401,
            {"error": {"code": "unauthorized", "message": "invalid bearer token"}},
            "the server refused the token (HTTP 401 unauthorized: invalid bearer token); "
            "check --token or $AGENT_RUNTIME_TOKEN",
        ),
        (409, None, "Conflict (HTTP 409)"),
    ],
)
def test_http_errors_carry_the_servers_message(status: int, body: JSON, expected: str) -> None:
    response = httpx.Response(status, json=body) if body is not None else httpx.Response(status)
    with pytest.raises(ChatError) as info:
        check_response(response)
    assert str(info.value) == expected


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["--command-timeout", "soon"], {}, "'soon' is not a number of seconds"),
        (["--command-timeout", "0"], {}, "'0' is not a positive number of seconds"),
        ([], {"AGENT_RUNTIME_COMMAND_TIMEOUT": "nan"}, "'nan' is not a positive number"),
        (["--url", "ftp://example.org"], {}, "must be an http(s):// or ws(s):// URL"),
        (["--url", "http://[::1"], {}, "is not a valid URL"),
        (["--url", "http://:8765"], {}, "URL with a host"),
        (["--session", "../etc"], {}, "--session '../etc' is not a session id"),
    ],
)
async def test_bad_flags_are_clear_usage_errors(
    argv: list[str],
    env: dict[str, str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    root: Path,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    base = ["--token", "t", "--workspace", str(root), "-m", "hi"]
    assert await run_chat([*base, *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert "Traceback" not in err
