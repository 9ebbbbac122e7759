"""The response side of the OpenAI chat-completions wire format, without I/O.

:class:`SSEDecoder` turns the response's bytes into event payloads;
:class:`ChunkAssembler` turns ``chat.completion.chunk`` payloads into
:data:`~agents.ModelDelta` values (text as it comes, tool calls once complete,
usage and finish at the end); :func:`error_message` and
:func:`is_context_overflow` read the upstream's error bodies. Separate from
``_openai_wire.py`` (the request side) because decoding a stream shares nothing
with encoding a request but the format's name.
"""

from __future__ import annotations

import codecs
import json
import re
import uuid

import attrs

from sessions import JSON, JSONObject, dumps

from .._core._model import (
    FinishDelta,
    ModelDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallRequest,
    UsageDelta,
)
from .._errors import ModelError

_EOL = re.compile(r"\r\n|\r|\n")

MAX_LINE = 8 * 1024 * 1024
"""A line longer than this is refused rather than buffered without bound."""


class SSEDecoder:
    """Turns the raw bytes of an event stream into the ``data`` of each event.

    Network reads split the stream anywhere (inside a UTF-8 sequence, between
    ``\\r`` and ``\\n``), so it keeps what it cannot decide yet. ``event``, ``id``,
    ``retry`` fields and ``:`` comments (keep-alives) are skipped.

    Multi-line ``data`` fields of one event are joined with ``\\n`` (as in the
    HTML specification).
    """

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        """The payloads of the events that *chunk* completes.

        Raises:
            ValueError: a line grew longer than :data:`MAX_LINE`.
        """
        text = self._partial + self._utf8.decode(chunk)
        out: list[str] = []
        start = 0
        for match in _EOL.finditer(text):
            if match.group() == "\r" and match.end() == len(text):
                # Possibly the first half of "\r\n": decide when more bytes arrive.
                break
            self._line(text[start : match.start()], out)
            start = match.end()
        self._partial = text[start:]
        if len(self._partial) > MAX_LINE:
            raise ValueError(f"event-stream line longer than {MAX_LINE} characters")
        return out

    def close(self) -> list[str]:
        """The payloads still buffered at the end of the stream.

        The specification drops an event that is not terminated by a blank line;
        real servers sometimes omit the last one, so it is delivered instead.
        """
        out: list[str] = []
        tail = self._partial + self._utf8.decode(b"", final=True)
        self._partial = ""
        for line in _EOL.split(tail):
            self._line(line, out)
        self._line("", out)
        return out

    def _line(self, line: str, out: list[str]) -> None:
        if not line:
            if self._data:
                out.append("\n".join(self._data))
                self._data = []
            return
        if line.startswith(":"):
            return
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value.removeprefix(" "))


def error_message(value: JSON) -> str:
    """The upstream's own error message from an error body, in whatever shape it came."""
    error = value.get("error", value) if isinstance(value, dict) else value
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        for key in ("message", "detail"):
            message = error.get(key)
            if isinstance(message, str):
                return message
    return dumps(value)[:500]


# Lower-cased fragments by which OpenAI, LiteLLM (``ContextWindowExceededError``),
# vLLM, Anthropic and others say that a request does not fit the model's window.
_OVERFLOW_MARKERS = (
    "context_length_exceeded",
    "contextwindowexceedederror",
    "maximum context length",
    "context length exceeded",
    "prompt is too long",
    "too many tokens",
    "reduce the length of the messages",
)


def is_context_overflow(status: int, error: JSON) -> bool:
    """Whether an HTTP *status* answer with body *error* says the context is too long.

    Only 400 and 413 qualify. *error* is the parsed body (OpenAI's ``{"error":
    {"message", "type", "code"}}`` or any other shape) or its text when it was not
    JSON; every string in it (message, type, code) is searched, case-insensitively.
    """
    if status not in (400, 413):
        return False
    text = " ".join(_strings(error, depth=4)).lower()
    return any(marker in text for marker in _OVERFLOW_MARKERS)


def _strings(value: JSON, *, depth: int) -> list[str]:
    if isinstance(value, str):
        return [value]
    if depth == 0:
        return []
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item, depth=depth - 1)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item, depth=depth - 1)]
    return []


def _detail(usage: JSONObject, details: str, key: str) -> int | None:
    """``usage[details][key]`` when it is a non-negative integer, else ``None``."""
    table = usage.get(details)
    value = table.get(key) if isinstance(table, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def protocol_error(message: str) -> ModelError:
    return ModelError(message, retryable=False, code="model_protocol_error")


class UpstreamError(Exception):
    """The server reported an error inside the stream (not a 4xx: those raise ModelError)."""


@attrs.define
class _CallBuilder:
    id: str = ""
    name: str = ""
    arguments: list[str] = attrs.field(factory=list)


class ChunkAssembler:
    """Assembles the data payloads of one completion into model deltas.

    Raises (from :meth:`feed`):
        ModelError: malformed chunk, nameless tool call, or an upstream 4xx error.
        UpstreamError: any other error chunk (may be worth a retry).
    """

    def __init__(self, model: str, source: str) -> None:
        self.model = model
        self.source = source
        self.finish_reason: str | None = None
        self.done = False
        self._calls: dict[int, _CallBuilder] = {}
        self._usage: UsageDelta | None = None

    def feed(self, payload: str) -> list[ModelDelta]:
        """The deltas one event payload yields."""
        if payload.strip() == "[DONE]":
            return self.complete()
        try:
            chunk: JSON = json.loads(payload)
        except ValueError as exc:
            raise protocol_error(
                f"malformed JSON chunk from {self.source} ({exc}): {payload[:200]!r}"
            ) from None
        if not isinstance(chunk, dict):
            raise protocol_error(f"chunk from {self.source} is not an object: {payload[:200]!r}")
        if "error" in chunk:
            self._error(chunk["error"])
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            # Some servers repeat usage in every chunk; the last one is the total.
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            model = chunk.get("model")
            self._usage = UsageDelta(
                prompt_tokens=prompt if isinstance(prompt, int) else 0,
                completion_tokens=completion if isinstance(completion, int) else 0,
                model=model if isinstance(model, str) and model else self.model,
                cached_tokens=_detail(usage, "prompt_tokens_details", "cached_tokens"),
                reasoning_tokens=_detail(usage, "completion_tokens_details", "reasoning_tokens"),
            )
        choices = chunk.get("choices")
        if choices is None:
            return []
        if not isinstance(choices, list):
            raise protocol_error(f"'choices' is not a list: {payload[:200]!r}")
        out: list[ModelDelta] = []
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                content = delta.get("content")
                if isinstance(content, str) and content:
                    out.append(TextDelta(content))
                fragments = delta.get("tool_calls")
                if isinstance(fragments, list):
                    for fragment in fragments:
                        if isinstance(fragment, dict):
                            self._add_fragment(fragment)
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                self.finish_reason = reason
                out += self._flush_calls()
        return out

    def complete(self) -> list[ModelDelta]:
        """The final deltas: calls not yet flushed, usage, then the finish."""
        out = self._flush_calls()
        if self._usage is not None:
            out.append(self._usage)
        out.append(FinishDelta(self.finish_reason or "stop"))
        self.done = True
        return out

    def _error(self, error: JSON) -> None:
        message = error_message(error)
        code = error.get("code") if isinstance(error, dict) else None
        if isinstance(code, int) and 400 <= code < 500 and code != 429:
            kind = "context_overflow" if is_context_overflow(code, error) else "model_rejected"
            raise ModelError(f"upstream error: {message}", retryable=False, code=kind)
        raise UpstreamError(f"upstream error in stream: {message}")

    def _add_fragment(self, fragment: JSONObject) -> None:
        index = fragment.get("index")
        call_id = fragment.get("id")
        if not isinstance(index, int):
            # Servers that omit the index send one call per fragment run; a new id starts a call.
            known = {b.id for b in self._calls.values()}
            last = max(self._calls, default=-1)
            is_new = isinstance(call_id, str) and bool(call_id) and call_id not in known
            index = last + 1 if is_new or last < 0 else last
        builder = self._calls.setdefault(index, _CallBuilder())
        if isinstance(call_id, str) and call_id:
            builder.id = call_id
        function = fragment.get("function")
        if isinstance(function, dict):
            name = function.get("name")
            if isinstance(name, str) and name and not builder.name:
                builder.name = name
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                builder.arguments.append(arguments)
            elif isinstance(arguments, dict):
                builder.arguments = [dumps(arguments)]

    def _flush_calls(self) -> list[ModelDelta]:
        out: list[ModelDelta] = []
        for index in sorted(self._calls):
            builder = self._calls[index]
            if not builder.name:
                raise protocol_error(f"tool call #{index} from {self.source} has no name")
            call = ToolCallRequest(
                id=builder.id or f"call_{uuid.uuid4().hex[:24]}",
                name=builder.name,
                arguments="".join(builder.arguments) or "{}",
            )
            out.append(ToolCallDelta(call))
        self._calls.clear()
        return out
