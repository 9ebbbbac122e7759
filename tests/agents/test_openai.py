"""The ``openai`` provider against a real loopback server (tests/fakes/openai_server.py).

Real sockets, so the real clock: timeouts are configured short instead of using
``autojump_clock``. Synchronisation goes through the fake's events, never sleeps.
"""

from __future__ import annotations

import base64
import gzip
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from agents._core._model import (
    ChatMessage,
    FinishDelta,
    ModelClient,
    ModelDelta,
    ModelRequest,
    TextDelta,
    ToolCallDelta,
    ToolCallRequest,
    ToolSpec,
    UsageDelta,
)
from agents._errors import ModelError, ModelTimeout
from agents._providers._openai import OpenAIClient, _Transient, open_openai_client
from agents._providers._openai_wire import SSEDecoder
from sessions import JSONObject, dumps
from tests.fakes.openai_server import (
    Behaviour,
    Chunk,
    Done,
    Drop,
    FakeOpenAI,
    HangUp,
    Pause,
    Raw,
    Reply,
    Script,
    Stall,
    Stream,
    context_overflow_reply,
    error_reply,
    finish_chunk,
    open_fake_openai,
    stream_text,
    text_chunk,
    tool_chunk,
    tool_fragment,
    usage_chunk,
)

REQUEST = ModelRequest(
    model="fake-model",
    messages=(ChatMessage("system", "be brief"), ChatMessage("user", "hi")),
)
READ_FILE = ToolSpec("read_file", "Read a file", {"type": "object", "properties": {}})


class CountingTransport(httpx.AsyncHTTPTransport):
    """Counts connection attempts, which a refused port cannot record itself."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return await super().handle_async_request(request)


@asynccontextmanager
async def running(
    script: Script,
    *,
    max_retries: int = 3,
    first_token_timeout: float = 10,
    idle_timeout: float = 10,
    api_key: str | None = None,
) -> AsyncIterator[tuple[FakeOpenAI, OpenAIClient]]:
    async with (
        open_fake_openai(script) as fake,
        open_openai_client(
            fake.base_url,
            "fake-model",
            api_key,
            first_token_timeout=first_token_timeout,
            idle_timeout=idle_timeout,
            max_retries=max_retries,
            backoff_base=0.01,
        ) as client,
    ):
        yield fake, client


async def collect(client: OpenAIClient, request: ModelRequest = REQUEST) -> list[ModelDelta]:
    async with client.stream(request) as deltas:
        return [delta async for delta in deltas]


async def test_streams_text_and_sends_a_streaming_request() -> None:
    async with running([stream_text("Hel", "lo")], api_key="sk-test") as (fake, client):
        assert await collect(client) == [TextDelta("Hel"), TextDelta("lo"), FinishDelta("stop")]
    [request] = fake.requests
    assert request.method == "POST"
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["accept-encoding"] == "identity"
    assert request.headers["user-agent"].startswith("agent-runtime")
    body = request.json()
    assert body["model"] == "fake-model"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert "tools" not in body
    assert "response_format" not in body


async def test_keep_alive_connection_serves_consecutive_streams() -> None:
    async with running([stream_text("a"), stream_text("b")]) as (fake, client):
        assert (await collect(client))[0] == TextDelta("a")
        assert (await collect(client))[0] == TextDelta("b")
    assert len(fake.requests) == 2


async def test_one_tool_call_split_over_many_deltas() -> None:
    steps = Stream(
        (
            text_chunk("Let me look."),
            tool_chunk(tool_fragment(0, call_id="call_1", name="read_file")),
            tool_chunk(tool_fragment(0, arguments='{"pa')),
            tool_chunk(tool_fragment(0, arguments='th": "a')),
            tool_chunk(tool_fragment(0, arguments='.py"}')),
            finish_chunk("tool_calls"),
            Done(),
        )
    )
    request = ModelRequest(model="fake-model", messages=REQUEST.messages, tools=(READ_FILE,))
    async with running([steps]) as (fake, client):
        deltas = await collect(client, request)
    assert deltas == [
        TextDelta("Let me look."),
        ToolCallDelta(ToolCallRequest("call_1", "read_file", '{"path": "a.py"}')),
        FinishDelta("tool_calls"),
    ]
    assert fake.requests[0].json()["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "read_file",
                "description": "Read a file",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]


async def test_parallel_tool_calls_with_interleaved_indices() -> None:
    steps = Stream(
        (
            tool_chunk(
                tool_fragment(1, call_id="call_b", name="list_files"),
                tool_fragment(0, call_id="call_a", name="read_file"),
            ),
            tool_chunk(tool_fragment(0, arguments='{"path":')),
            tool_chunk(tool_fragment(1, arguments='{"path":"src"')),
            tool_chunk(tool_fragment(0, arguments='"a.py"}'), tool_fragment(1, arguments="}")),
            finish_chunk("tool_calls"),
            Done(),
        )
    )
    async with running([steps]) as (_, client):
        deltas = await collect(client)
    assert deltas == [
        ToolCallDelta(ToolCallRequest("call_a", "read_file", '{"path":"a.py"}')),
        ToolCallDelta(ToolCallRequest("call_b", "list_files", '{"path":"src"}')),
        FinishDelta("tool_calls"),
    ]


async def test_usage_is_reported_before_finish() -> None:
    async with running([stream_text("ok", usage=(12, 3))]) as (_, client):
        deltas = await collect(client)
    assert deltas == [TextDelta("ok"), UsageDelta(12, 3, "fake-model"), FinishDelta("stop")]


async def test_finish_without_done_marker_is_accepted() -> None:
    steps = Stream((text_chunk("ok"), finish_chunk("length"), usage_chunk(1, 1)))
    async with running([steps]) as (_, client):
        deltas = await collect(client)
    assert deltas[0] == TextDelta("ok")
    assert deltas[-1] == FinishDelta("max_tokens")  # OpenAI's "length", in neutral words


async def test_malformed_json_chunk_is_a_model_error() -> None:
    steps = Stream((text_chunk("a"), Raw('data: {"choices": [\n\n'), Done()))
    async with running([steps]) as (fake, client), client.stream(REQUEST) as deltas:
        assert await anext(deltas) == TextDelta("a")
        with pytest.raises(ModelError, match="malformed JSON chunk") as info:
            await anext(deltas)
    assert not info.value.retryable
    assert len(fake.requests) == 1


async def test_500_then_success_is_retried() -> None:
    async with running([error_reply(500, "boom"), stream_text("ok")]) as (fake, client):
        assert await collect(client) == [TextDelta("ok"), FinishDelta("stop")]
    assert len(fake.requests) == 2


async def test_429_then_success_is_retried() -> None:
    script: list[Behaviour] = [error_reply(429, "slow down", retry_after=0.01), stream_text("ok")]
    async with running(script) as (fake, client):
        assert await collect(client) == [TextDelta("ok"), FinishDelta("stop")]
    assert len(fake.requests) == 2


async def test_retries_give_up_with_the_upstream_message() -> None:
    async with running([error_reply(503, "overloaded")] * 3, max_retries=2) as (fake, client):
        with pytest.raises(ModelError, match=r"503: overloaded.*after 3 attempts") as info:
            await collect(client)
    assert info.value.retryable
    assert len(fake.requests) == 3


async def test_client_error_is_not_retried() -> None:
    async with running([error_reply(400, "context too long")]) as (fake, client):
        with pytest.raises(ModelError, match="HTTP 400: context too long") as info:
            await collect(client)
    assert not info.value.retryable
    assert info.value.code == "model_rejected"
    assert len(fake.requests) == 1


async def test_cached_and_reasoning_tokens_reach_the_usage_delta() -> None:
    usage = usage_chunk(1200, 300, cached_tokens=1024, reasoning_tokens=256)
    steps = Stream((text_chunk("ok"), finish_chunk(), usage, Done()))
    async with running([steps]) as (_, client):
        deltas = await collect(client)
    assert UsageDelta(1200, 300, "fake-model", cached_tokens=1024, reasoning_tokens=256) in deltas


async def test_usage_without_details_has_no_cached_or_reasoning_tokens() -> None:
    async with running([stream_text("ok", usage=(12, 3))]) as (_, client):
        [usage] = [d for d in await collect(client) if isinstance(d, UsageDelta)]
    assert (usage.cached_tokens, usage.reasoning_tokens) == (None, None)


async def test_a_context_length_error_is_a_context_overflow_and_not_retried() -> None:
    async with running([context_overflow_reply(4096), stream_text("unused")]) as (fake, client):
        with pytest.raises(ModelError, match="maximum context length is 4096 tokens") as info:
            await collect(client)
    assert info.value.code == "context_overflow"
    assert not info.value.retryable
    assert len(fake.requests) == 1


async def test_a_litellm_context_window_error_is_a_context_overflow() -> None:
    message = "litellm.ContextWindowExceededError: prompt is too long: 210000 tokens > 200000"
    reply = Reply(400, {"error": {"message": message, "type": None, "code": "400"}})
    async with running([reply]) as (fake, client):
        with pytest.raises(ModelError) as info:
            await collect(client)
    assert info.value.code == "context_overflow"
    assert len(fake.requests) == 1


async def test_an_ordinary_400_stays_model_rejected() -> None:
    async with running([error_reply(400, "unknown parameter: temprature")]) as (fake, client):
        with pytest.raises(ModelError, match="unknown parameter") as info:
            await collect(client)
    assert info.value.code == "model_rejected"
    assert len(fake.requests) == 1


async def test_upstream_error_after_the_first_token_is_not_retried() -> None:
    error: JSONObject = {"error": {"message": "internal failure", "code": 500}}
    steps = Stream((text_chunk("par"), Chunk(error)))
    async with running([steps, stream_text("unused")]) as (fake, client):
        async with client.stream(REQUEST) as deltas:
            assert await anext(deltas) == TextDelta("par")
            with pytest.raises(ModelError, match=r"internal failure.*not retried") as info:
                await anext(deltas)
        assert not info.value.retryable
        assert len(fake.requests) == 1


async def test_connection_dropped_after_the_first_token_is_not_retried() -> None:
    steps = Stream((text_chunk("par"), Drop()))
    async with running([steps, stream_text("unused")]) as (fake, client):
        with pytest.raises(ModelError, match="not retried") as info:
            await collect(client)
    assert not info.value.retryable
    assert len(fake.requests) == 1


async def test_connection_lost_before_the_first_token_is_retried() -> None:
    script: list[Behaviour] = [HangUp(), Stream((Drop(),)), stream_text("ok")]
    async with running(script) as (fake, client):
        assert await collect(client) == [TextDelta("ok"), FinishDelta("stop")]
    assert len(fake.requests) == 3


async def test_a_kept_alive_connection_the_server_dropped_costs_no_attempt() -> None:
    # The server closes the idle connection as the next request arrives (uvicorn
    # after 5 s idle): the pool sends it again on a new connection, so even with
    # no retries allowed the call succeeds, without a backoff.
    script: list[Behaviour] = [stream_text("a"), HangUp(), stream_text("b")]
    async with running(script, max_retries=0) as (fake, client):
        assert (await collect(client))[0] == TextDelta("a")
        assert (await collect(client))[0] == TextDelta("b")
    assert len(fake.requests) == 3
    assert fake.connections == 2


async def test_a_long_history_sent_in_parts_arrives_whole_and_is_resent_whole() -> None:
    # A body of several parts (see request_parts), one of them 100 KB: the server
    # gets the same bytes each time, the resend on a new connection included.
    history = (
        ChatMessage("system", "be brief"),
        ChatMessage("user", "x" * 100_000),
        ChatMessage("assistant", "ok"),
        ChatMessage("user", "and now?"),
    )
    longer = ModelRequest(model="fake-model", messages=history)
    script: list[Behaviour] = [stream_text("a"), HangUp(), stream_text("b")]
    async with running(script, max_retries=0) as (fake, client):
        assert (await collect(client, longer))[0] == TextDelta("a")
        assert (await collect(client, longer))[0] == TextDelta("b")
        expected = client.request_body(longer)
    assert [request.json() for request in fake.requests] == [expected] * 3
    assert fake.requests[1].raw == fake.requests[2].raw
    assert fake.connections == 2


async def test_stall_after_the_first_token_hits_the_idle_timeout() -> None:
    steps = Stream((text_chunk("a"), Stall()))
    async with running([steps], idle_timeout=0.2) as (fake, client):
        async with client.stream(REQUEST) as deltas:
            assert await anext(deltas) == TextDelta("a")
            with pytest.raises(ModelTimeout, match="idle timeout") as info:
                await anext(deltas)
        assert not info.value.retryable
        with trio.fail_after(5):
            await fake.disconnected.wait()
        assert len(fake.requests) == 1


async def test_slow_but_steady_stream_does_not_hit_the_idle_timeout() -> None:
    steps = Stream((text_chunk("a"), Pause(0.1), text_chunk("b"), Pause(0.1), finish_chunk()))
    async with running([steps], idle_timeout=0.5) as (_, client):
        assert await collect(client) == [TextDelta("a"), TextDelta("b"), FinishDelta("stop")]


async def test_no_first_token_hits_the_first_token_timeout() -> None:
    async with running([Stream((Stall(),))], first_token_timeout=0.2) as (fake, client):
        with pytest.raises(ModelTimeout, match="no first token"):
            await collect(client)
        with trio.fail_after(5):
            await fake.disconnected.wait()
    assert len(fake.requests) == 1


async def test_connect_refused_is_retried_then_fails() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    transport = CountingTransport()
    url = f"http://127.0.0.1:{port}/v1"
    async with open_openai_client(
        url, "m", max_retries=2, backoff_base=0.01, transport=transport
    ) as client:
        with pytest.raises(ModelError, match=r"cannot reach.*after 3 attempts") as info:
            await collect(client)
    assert info.value.retryable
    assert transport.calls == 3


async def test_connect_timeout_is_retried_then_a_model_timeout() -> None:
    attempts = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ConnectTimeout("timed out", request=request)

    transport = httpx.MockTransport(refuse)
    async with open_openai_client(
        "http://upstream.invalid/v1", "m", max_retries=1, backoff_base=0.01, transport=transport
    ) as client:
        with pytest.raises(ModelTimeout, match=r"timed out connecting.*after 2 attempts"):
            await collect(client)
    assert attempts == 2


async def test_a_json_answer_instead_of_a_stream_is_a_clear_error() -> None:
    async with running([Reply(200, {"error": "streaming is disabled"})]) as (fake, client):
        with pytest.raises(ModelError, match=r"did not stream.*streaming is disabled"):
            await collect(client)
    assert len(fake.requests) == 1


async def test_idle_after_finish_reason_ends_the_stream_instead_of_failing() -> None:
    steps = Stream((text_chunk("done"), finish_chunk(), Stall()))
    async with running([steps], idle_timeout=0.2) as (_, client):
        assert await collect(client) == [TextDelta("done"), FinishDelta("stop")]


async def test_tool_calls_without_index_are_told_apart_by_id() -> None:
    first: JSONObject = {"id": "c1", "function": {"name": "read_file", "arguments": {"path": "a"}}}
    second: JSONObject = {"id": "c2", "function": {"name": "list_files", "arguments": ""}}
    steps = Stream((tool_chunk(first), tool_chunk(second), finish_chunk("tool_calls"), Done()))
    async with running([steps]) as (_, client):
        deltas = await collect(client)
    assert deltas == [
        ToolCallDelta(ToolCallRequest("c1", "read_file", '{"path":"a"}')),
        ToolCallDelta(ToolCallRequest("c2", "list_files", "{}")),
        FinishDelta("tool_calls"),
    ]


async def test_a_failed_stream_stays_failed() -> None:
    script: list[Behaviour] = [error_reply(401, "bad key"), stream_text("unused")]
    async with running(script) as (fake, client), client.stream(REQUEST) as deltas:
        with pytest.raises(ModelError, match="bad key"):
            await anext(deltas)
        assert [d async for d in deltas] == []
    assert len(fake.requests) == 1


async def test_cancellation_mid_stream_closes_the_connection() -> None:
    steps = Stream((text_chunk("a"), Stall()))
    async with running([steps]) as (fake, client):
        with trio.CancelScope() as scope:
            async with client.stream(REQUEST) as deltas:
                assert await anext(deltas) == TextDelta("a")
                scope.cancel()
                await anext(deltas)
        assert scope.cancelled_caught
        with trio.fail_after(5):
            await fake.disconnected.wait()


async def test_satisfies_the_model_client_protocol() -> None:
    async with open_openai_client("http://127.0.0.1:9/v1", "m") as client:
        as_protocol: ModelClient = client
        assert as_protocol.name == "openai"


def test_rejects_a_base_url_without_scheme() -> None:
    with pytest.raises(ValueError, match="http"):
        OpenAIClient("localhost:8000/v1", "m")


@pytest.mark.parametrize(
    ("setting", "value"),
    [("connect_timeout", 0.0), ("first_token_timeout", -1.0), ("idle_timeout", float("nan"))],
)
def test_rejects_a_timeout_that_is_not_positive(setting: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{setting} must be a positive number"):
        timeouts: dict[str, Any] = {setting: value}
        OpenAIClient("http://127.0.0.1:1/v1", "m", **timeouts)
    with pytest.raises(ValueError, match="max_retries must not be negative"):
        OpenAIClient("http://127.0.0.1:1/v1", "m", max_retries=-1)


def test_backoff_is_capped_for_many_retries() -> None:
    client = OpenAIClient("http://127.0.0.1:1/v1", "m", max_retries=5000)
    failure = _Transient("busy")
    assert client._retry_delay(1, failure) <= 0.5
    # Uncapped, attempt 12 would wait ~17 minutes and attempt 1100 overflow a float.
    assert 15.0 <= client._retry_delay(12, failure) <= 30.0
    assert 15.0 <= client._retry_delay(1100, failure) <= 30.0


def test_sse_decoder_handles_arbitrary_splits() -> None:
    stream = (
        'data: {"a": "é"}\r\n\r\n: keep-alive\n\nevent: x\ndata: one\ndata: two\r\rdata: [DONE]\n\n'
    )
    raw = stream.encode()
    expected = ['{"a": "é"}', "one\ntwo", "[DONE]"]
    for size in range(1, 8):
        decoder = SSEDecoder()
        out: list[str] = []
        for i in range(0, len(raw), size):
            out += decoder.feed(raw[i : i + size])
        out += decoder.close()
        assert out == expected, size


def test_sse_decoder_delivers_an_unterminated_last_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: last") == []
    assert decoder.close() == ["last"]


async def test_finished_streams_reuse_one_connection() -> None:
    script = [stream_text("a", "b", usage=(3, 2)) for _ in range(5)]
    async with running(script) as (fake, client):
        for _ in range(5):
            deltas = await collect(client)
            assert deltas[:2] == [TextDelta("a"), TextDelta("b")]
    assert len(fake.requests) == 5
    assert fake.connections == 1


async def test_a_stream_left_early_drops_its_connection() -> None:
    script = [stream_text(*["w"] * 50) for _ in range(2)]
    async with running(script) as (fake, client):
        for _ in range(2):
            async with client.stream(REQUEST) as deltas:
                assert await anext(deltas) == TextDelta("w")
    # Leaving mid-stream closes the response (the upstream must stop generating).
    assert fake.connections == 2


def test_pool_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        OpenAIClient("http://127.0.0.1:1/v1", "m", max_connections=0)


async def test_calls_go_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fake answers absolute-form requests too, which is what a plain HTTP
    # proxy receives: reaching it through HTTP_PROXY proves the call was proxied.
    for name in ("http_proxy", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    async with open_fake_openai([stream_text("via"), stream_text("direct")]) as fake:
        monkeypatch.setenv("HTTP_PROXY", fake.base_url.removesuffix("/v1"))
        async with open_openai_client("http://upstream.invalid/v1", "m") as client:
            assert (await collect(client))[0] == TextDelta("via")
        assert fake.requests[0].path == "http://upstream.invalid/v1/chat/completions"
        # NO_PROXY exempts the host: then the fake is reached directly, without one.
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with open_openai_client(fake.base_url, "m") as client:
            assert (await collect(client))[0] == TextDelta("direct")
        assert fake.requests[1].path == "/v1/chat/completions"


async def test_a_stream_the_server_compressed_anyway_is_decoded() -> None:
    # We ask for identity (a compressed event stream is buffered by its compressor),
    # but a server may compress regardless; then the body is decoded as before.
    events = [text_chunk("zip").data, text_chunk("ped").data, finish_chunk().data]
    body = "".join(f"data: {dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"

    def compressed(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept-encoding"] == "identity"
        headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
        return httpx.Response(200, headers=headers, content=gzip.compress(body.encode()))

    transport = httpx.MockTransport(compressed)
    async with open_openai_client("http://upstream.invalid/v1", "m", transport=transport) as client:
        deltas = await collect(client)
    assert deltas == [TextDelta("zip"), TextDelta("ped"), FinishDelta("stop")]


async def test_a_proxy_named_without_a_scheme_is_an_http_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    async with open_fake_openai([stream_text("via")]) as fake:
        monkeypatch.setenv("HTTP_PROXY", fake.base_url.removeprefix("http://").removesuffix("/v1"))
        async with open_openai_client("http://upstream.invalid/v1", "m") as client:
            assert (await collect(client))[0] == TextDelta("via")
        assert fake.requests[0].path == "http://upstream.invalid/v1/chat/completions"


async def test_credentials_in_the_url_are_sent_as_basic_auth() -> None:
    async with open_fake_openai([stream_text("ok")]) as fake:
        url = fake.base_url.replace("http://", "http://us%40er:p%3Aw@")
        async with open_openai_client(url, "m") as client:
            assert (await collect(client))[0] == TextDelta("ok")
    [request] = fake.requests
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"us@er:p:w").decode()
    assert request.path == "/v1/chat/completions"
    assert "us%40er" not in str(client.url)


def test_a_certificate_setting_that_cannot_be_read_fails_at_start_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(OSError):
        OpenAIClient("https://api.example.invalid/v1", "m")


async def test_a_call_after_the_client_closed_fails_at_once_without_retries() -> None:
    async with open_fake_openai([stream_text("late")]) as fake:
        client = OpenAIClient(fake.base_url, "m", max_retries=3, backoff_base=10)
        await client.aclose()
        with trio.fail_after(5), pytest.raises(ModelError, match="closed") as caught:
            await collect(client)
        assert caught.value.code == "model_unavailable"
        assert fake.requests == []
