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
import logging
import re
import uuid
from typing import Final

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

# The provider's logger, named as before this module was split out of ``_openai.py``.
logger = logging.getLogger("agents._providers._openai")

_EOL = re.compile(r"\r\n|\r|\n")

MAX_LINE = 8 * 1024 * 1024
"""A line (or an event's data) longer than this is refused rather than buffered without bound."""


# OpenAI's finish reasons in the neutral words of FinishDelta (the others are the same).
_NEUTRAL_FINISH: Final = {"length": "max_tokens"}


class SSEDecoder:
    """Turns the raw bytes of an event stream into the ``data`` of each event.

    Network reads split the stream anywhere (inside a UTF-8 sequence, between
    ``\\r`` and ``\\n``), so it keeps what it cannot decide yet. ``event``, ``id``,
    ``retry`` fields and ``:`` comments (keep-alives) are skipped.

    Multi-line ``data`` fields of one event are joined with ``\\n`` (as in the
    HTML specification).

    Linear in the stream's length however it is split: each read's text is scanned
    once, and an unfinished line is kept as a list of pieces joined once, when its
    end arrives (a 4 MiB line in 1 KiB reads once cost a minute of CPU, rescanning
    the whole pending line per read).
    """

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending: list[str] = []  # the unfinished line, in pieces
        self._pending_len = 0
        # The last read ended in "\r": that line is over, and a "\n" first in the
        # next text is the rest of the same "\r\n", not an empty line.
        self._after_cr = False
        self._data: list[str] = []
        self._data_len = 0

    def feed(self, chunk: bytes) -> list[str]:
        """The payloads of the events that *chunk* completes.

        Raises:
            ValueError: a line or an event grew longer than :data:`MAX_LINE` (as
                soon as it does, not when it ends).
        """
        out: list[str] = []
        self._scan(self._utf8.decode(chunk), out)
        return out

    def close(self) -> list[str]:
        """The payloads still buffered at the end of the stream.

        The specification drops an event that is not terminated by a blank line;
        real servers sometimes omit the last one, so it is delivered instead.
        """
        out: list[str] = []
        self._scan(self._utf8.decode(b"", final=True), out)
        pending, self._pending, self._pending_len = self._pending, [], 0
        self._line("".join(pending), out)
        self._line("", out)
        return out

    def _scan(self, text: str, out: list[str]) -> None:
        if not text:
            return  # e.g. only the first bytes of a UTF-8 sequence: nothing decided
        start = 1 if self._after_cr and text[0] == "\n" else 0
        self._after_cr = False
        pending = self._pending
        for match in _EOL.finditer(text, start):
            end = match.start()
            if pending:
                if self._pending_len + end - start > MAX_LINE:
                    raise _too_long("line")
                pending.append(text[start:end])
                line = "".join(pending)
                pending.clear()
                self._pending_len = 0
            else:
                if end - start > MAX_LINE:
                    raise _too_long("line")
                line = text[start:end]
            self._line(line, out)
            start = match.end()
        if start < len(text):
            self._pending_len += len(text) - start
            if self._pending_len > MAX_LINE:
                raise _too_long("line")
            pending.append(text[start:])
        elif text[-1] == "\r":
            self._after_cr = True

    def _line(self, line: str, out: list[str]) -> None:
        if not line:
            if self._data:
                out.append("\n".join(self._data))
                self._data, self._data_len = [], 0
            return
        if line.startswith(":"):
            return
        field, _, value = line.partition(":")
        if field == "data":
            # Bounded like a line: short data lines without the blank line that
            # ends their event would otherwise be buffered without end.
            self._data_len += len(value)
            if self._data_len > MAX_LINE:
                raise _too_long("event")
            self._data.append(value.removeprefix(" "))


def _too_long(what: str) -> ValueError:
    return ValueError(f"event-stream {what} longer than {MAX_LINE} characters")


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


MAX_TOKENS = 10**12
"""The largest token count taken from a usage chunk: more is a broken upstream."""


def _count(value: JSON) -> int | None:
    """*value* when it is a token count (an integer, not a bool, 0 to :data:`MAX_TOKENS`)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS:
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
        # Keyed by (wire index, order of arrival) and flushed in that order: a wire
        # index names a call only until a fragment with another id reuses it.
        self._calls: dict[tuple[int, int], _CallBuilder] = {}
        self._by_index: dict[int, tuple[int, int]] = {}  # the call an index continues
        self._last: tuple[int, int] | None = None  # the call started last
        self._usage: UsageDelta | None = None
        self._produced = False  # any text or tool call so far
        self._bad_usage_logged = False

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
            model = chunk.get("model")
            self._usage = UsageDelta(
                prompt_tokens=self._usage_count(usage, "prompt_tokens") or 0,
                completion_tokens=self._usage_count(usage, "completion_tokens") or 0,
                model=model if isinstance(model, str) and model else self.model,
                cached_tokens=self._usage_count(usage, "prompt_tokens_details", "cached_tokens"),
                reasoning_tokens=self._usage_count(
                    usage, "completion_tokens_details", "reasoning_tokens"
                ),
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
                    self._produced = True
                fragments = delta.get("tool_calls")
                if isinstance(fragments, list):
                    for fragment in fragments:
                        if isinstance(fragment, dict):
                            self._add_fragment(fragment)
                            self._produced = True
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                self.finish_reason = reason
                out += self._flush_calls()
        return out

    @property
    def empty(self) -> bool:
        """Nothing came yet that ends or makes an answer: no text, tool call or finish_reason."""
        return not self._produced and self.finish_reason is None

    def complete(self) -> list[ModelDelta]:
        """The final deltas: calls not yet flushed, usage, then the finish.

        A stream without a ``finish_reason`` is taken as ``"stop"`` if it said
        something; an empty one is an error, as it is when it ends without
        ``[DONE]`` (the caller's check): an answer of nothing that does not even
        say why it ended is a broken upstream, not an empty reply.

        Raises:
            ModelError: no text, no tool call and no ``finish_reason``.
        """
        if self.empty:
            raise protocol_error(
                f"{self.source} ended its stream ([DONE]) without any output or finish_reason"
            )
        out = self._flush_calls()
        if self._usage is not None:
            out.append(self._usage)
        reason = self.finish_reason or "stop"
        out.append(FinishDelta(_NEUTRAL_FINISH.get(reason, reason)))
        self.done = True
        return out

    def _error(self, error: JSON) -> None:
        message = error_message(error)
        code = error.get("code") if isinstance(error, dict) else None
        if isinstance(code, int) and 400 <= code < 500 and code != 429:
            kind = "context_overflow" if is_context_overflow(code, error) else "model_rejected"
            raise ModelError(f"upstream error: {message}", retryable=False, code=kind)
        raise UpstreamError(f"upstream error in stream: {message}")

    def _usage_count(self, usage: JSONObject, key: str, detail: str | None = None) -> int | None:
        """``usage[key]`` (or ``usage[key][detail]``) if it is a token count, else ``None``.

        Anything else (negative, a bool, a float, a string, absurdly large) is
        taken as missing: it would reach clients and metrics as it is (a negative
        count even fails the turn, as a counter cannot go down). Logged once per call.
        """
        value: JSON = usage.get(key)
        if detail is not None:
            value = value.get(detail) if isinstance(value, dict) else None
        count = _count(value)
        if count is None and value is not None and not self._bad_usage_logged:
            self._bad_usage_logged = True
            name = key if detail is None else f"{key}.{detail}"
            logger.warning(
                "openai: %s sent an invalid usage count %s=%.100r; ignored",
                self.source,
                name,
                value,
            )
        return count

    def _add_fragment(self, fragment: JSONObject) -> None:
        index = fragment.get("index")
        call_id = fragment.get("id")
        new_id = call_id if isinstance(call_id, str) and call_id else None
        key: tuple[int, int] | None
        if isinstance(index, int):
            key = self._by_index.get(index)
            if key is not None and new_id is not None and self._calls[key].id not in ("", new_id):
                # Another id at a used index is another call: some servers number every call 0.
                key = None
        else:
            # Servers that omit the index send one call per fragment run; a new id starts a call.
            known = {b.id for b in self._calls.values()}
            key = None if new_id is not None and new_id not in known else self._last
            index = max(self._by_index, default=-1) + 1 if key is None else key[0]
        if key is None:
            key = (index, len(self._calls))
            self._calls[key] = _CallBuilder()
            self._by_index[index] = self._last = key
        builder = self._calls[key]
        if new_id is not None:
            builder.id = new_id
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
        for key in sorted(self._calls):
            builder = self._calls[key]
            if not builder.name:
                raise protocol_error(f"tool call #{key[0]} from {self.source} has no name")
            call = ToolCallRequest(
                id=builder.id or f"call_{uuid.uuid4().hex[:24]}",
                name=builder.name,
                arguments="".join(builder.arguments) or "{}",
            )
            out.append(ToolCallDelta(call))
        self._calls.clear()
        self._by_index.clear()
        self._last = None
        return out
