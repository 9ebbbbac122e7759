"""One streamed completion's I/O for the ``openai`` provider: attempts, deadlines, closing.

:class:`DeltaStream` sends one request (again, while a retry is allowed), reads
its event stream under the first-token and idle deadlines (both wait for events,
not bytes), and closes the response at once when it is left; it sorts each
failure into :class:`Transient` (a fresh attempt may fix it) or a final
:class:`ModelError`. Separate from ``_openai.py``, which holds the client (its
settings, connection pool and retry delays) and states the failure policy this
carries out; the parsing is ``_openai_response.py``'s.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

import httpx
import trio

from sessions import JSON

from .._core._model import ModelDelta
from .._errors import ModelError, ModelTimeout
from ._http_pool import RequestParts
from ._openai_response import (
    ChunkAssembler,
    SSEDecoder,
    UpstreamError,
    error_message,
    is_context_overflow,
    protocol_error,
)

# The provider's logger, named as before this module was split out of ``_openai.py``.
logger = logging.getLogger("agents._providers._openai")

_MAX_ERROR_BODY = 64 * 1024
CLOSE_GRACE = 2.0


class Transient(Exception):
    """A failure that a fresh attempt may fix, if nothing was delivered yet."""

    def __init__(
        self, message: str, *, timeout: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.timeout = timeout
        self.retry_after = retry_after


def _error_value(body: bytes) -> JSON:
    """An error body parsed, or its text when it is not JSON."""
    try:
        value: JSON = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:500] or "(empty body)"
    return value


def _error_text(body: bytes) -> str:
    value = _error_value(body)
    return value if isinstance(value, str) else error_message(value)


def _retry_after(response: httpx.Response) -> float | None:
    value: str = response.headers.get("retry-after", "")
    try:
        return float(value)
    except ValueError:
        return None


class _Client(Protocol):
    """What a stream needs of its :class:`~agents._providers._openai.OpenAIClient`."""

    url: httpx.URL
    headers: httpx.Headers
    timeout: dict[str, float | None]
    transport: httpx.AsyncBaseTransport
    first_token_timeout: float
    idle_timeout: float
    max_retries: int

    def _retry_delay(self, attempt: int, failure: Transient) -> float: ...


class DeltaStream:
    """One completion's I/O: attempts, deadlines and closing (parsing is ChunkAssembler's).

    A plain async iterator rather than an async generator, so no cancel scope
    ever spans a ``yield`` and closing is explicit (:meth:`aclose`).
    """

    def __init__(self, client: _Client, model: str, body: tuple[bytes, ...]) -> None:
        self._client = client
        self._model = model
        self._body = RequestParts(body)
        self._pending: deque[ModelDelta] = deque()
        self._delivered = False
        self._done = False
        self._attempt = 0
        self._response: httpx.Response | None = None
        self._reads: AsyncIterator[bytes] | None = None
        self._start_attempt_state()

    def _start_attempt_state(self) -> None:
        self._sse = SSEDecoder()
        self._payloads: deque[str] = deque()
        self._eof = False
        self._got_event = False
        self._content_type = ""
        self._head: bytes | None = None  # the body's first read, quoted if no event came
        self._deadline = trio.current_time() + self._client.first_token_timeout
        self._chunks = ChunkAssembler(self._model, str(self._client.url))

    def __aiter__(self) -> DeltaStream:
        return self

    async def __anext__(self) -> ModelDelta:
        while not self._pending:
            if self._done:
                raise StopAsyncIteration
            try:
                await self._advance()
            except ModelError:
                # Terminal: a later __anext__ must not quietly start a new request.
                await self.aclose()
                raise
        self._delivered = True
        return self._pending.popleft()

    async def aclose(self) -> None:
        self._done = True
        self._pending.clear()
        await self._close_response()

    async def _advance(self) -> None:
        """Handle one more event, opening (or re-opening) the response as needed."""
        try:
            if self._response is None:
                await self._open()
            payload = await self._next_payload()
            if payload is None:
                if self._chunks.empty and self._head is None:
                    # Not one byte of a body: a proxy or a restarting server hung up
                    # after the headers. Worth another attempt while one is allowed.
                    raise Transient("the stream ended before any byte of its body")
                if self._chunks.empty:
                    # As after [DONE] (ChunkAssembler.complete): an upstream that sent
                    # a body of no output will send it again; a retry would hide it.
                    raise self._nothing_came()
                if self._chunks.finish_reason is None:
                    raise Transient("the stream ended before the model finished")
                self._pending += self._chunks.complete()
            else:
                try:
                    self._pending += self._chunks.feed(payload)
                except UpstreamError as exc:
                    raise Transient(str(exc)) from None
        except Transient as failure:
            await self._close_response()
            if self._delivered:
                raise ModelError(
                    f"{failure.message} (mid-stream, not retried)",
                    retryable=False,
                    code="model_stream_broken",
                ) from None
            if self._attempt > self._client.max_retries:
                message = f"{failure.message} (gave up after {self._attempt} attempts)"
                if failure.timeout:
                    raise ModelTimeout(message, retryable=True) from None
                raise ModelError(message, retryable=True, code="model_unavailable") from None
            delay = self._client._retry_delay(self._attempt, failure)
            logger.warning("openai: %s; retrying in %.2fs", failure.message, delay)
            await trio.sleep(delay)
        if self._chunks.done:
            self._done = True
            await self._read_to_end()
            await self._close_response()

    async def _open(self) -> None:
        self._attempt += 1
        self._start_attempt_state()
        client = self._client
        url = client.url
        # stream=, not content=: httpx adds no Host or Content-Length then.
        headers = [
            (b"Host", url.netloc),
            *client.headers.raw,
            (b"Content-Length", str(self._body.length).encode()),
        ]
        request = httpx.Request(
            "POST", url, headers=headers, stream=self._body, extensions={"timeout": client.timeout}
        )
        body = b""
        try:
            with trio.fail_at(self._deadline):
                response = await client.transport.handle_async_request(request)
                content_type: str = response.headers.get("content-type", "")
                # A JSON body means the server ignored "stream": true or sent an error
                # with a 200, an HTML one is the page of something in between (a login,
                # a proxy's error); anything else is given the benefit of the doubt.
                streaming = "json" not in content_type and "html" not in content_type
                if not response.is_success or not streaming:
                    try:
                        body = await _read_capped(response)
                    finally:
                        await response.aclose()
        except trio.TooSlowError:
            raise self._first_token_timeout() from None
        except httpx.TimeoutException:
            raise Transient(f"timed out connecting to {url}", timeout=True) from None
        except httpx.TransportError as exc:
            raise Transient(f"cannot reach {url}: {exc or type(exc).__name__}") from None
        except httpx.HTTPError as exc:
            raise ModelError(f"request to {url} failed: {exc}", code="model_unavailable") from None
        status = response.status_code
        if not response.is_success:
            message = f"{url} answered HTTP {status}: {_error_text(body)}"
            if status == 429 or status >= 500:
                raise Transient(message, retry_after=_retry_after(response))
            if is_context_overflow(status, _error_value(body)):
                raise ModelError(message, retryable=False, code="context_overflow")
            raise ModelError(message, retryable=False, code="model_rejected")
        if not streaming:
            raise protocol_error(
                f"{url} did not stream (content-type {content_type!r}): {_error_text(body)}"
            )
        self._response = response
        self._content_type = content_type
        # The body as sent when it is not encoded (we ask for identity: a gzipped
        # event stream would be buffered by whoever compresses it): one layer of
        # httpx's decoding generators less per network read.
        identity = response.headers.get("content-encoding", "identity") == "identity"
        self._reads = response.aiter_raw() if identity else response.aiter_bytes()

    def _nothing_came(self) -> ModelError:
        """The error for a stream that ended with no output and no finish_reason."""
        url, content_type = self._client.url, self._content_type or "none"
        if self._got_event:
            return protocol_error(f"{url} ended its stream without any output or finish_reason")
        head = (self._head or b"")[:200]
        return protocol_error(
            f"{url} ended its stream without an event (content-type {content_type!r}); "
            f"it sent {head!r}"
        )

    def _first_token_timeout(self) -> ModelTimeout:
        after = self._client.first_token_timeout
        return ModelTimeout(
            f"no first token from {self._client.url} within {after:g}s", retryable=True
        )

    async def _next_payload(self) -> str | None:
        """The next event's data, or ``None`` at the end of the stream."""
        assert self._reads is not None
        deadline = self._deadline  # the first token's, fixed when the attempt started
        if self._got_event and not self._payloads:
            # From now on, across reads: bytes that complete no event (a trickle, ":"
            # comments) must not hold a turn forever. Not from the last event: the
            # time its consumer took is not the upstream's silence.
            deadline = trio.current_time() + self._client.idle_timeout
        while not self._payloads:
            if self._eof:
                return None
            chunk: bytes | None = None
            try:
                # A bare scope rather than trio.fail_at: this runs once per network
                # read, and fail_at adds a generator-based context manager.
                with trio.CancelScope(deadline=deadline) as read:
                    chunk = await anext(self._reads, None)
                if read.cancelled_caught:
                    raise trio.TooSlowError
            except trio.TooSlowError:
                if self._chunks.finish_reason is not None:
                    # Only the usage chunk or [DONE] is missing; the answer is whole.
                    logger.warning("openai: stream idle after finish_reason; ending it")
                    self._eof = True
                    return None
                if not self._got_event:
                    raise self._first_token_timeout() from None
                idle = self._client.idle_timeout
                raise ModelTimeout(
                    f"{self._client.url} sent no event for {idle:g}s (idle timeout)",
                    retryable=not self._delivered,
                ) from None
            except httpx.TransportError as exc:
                raise Transient(f"connection to {self._client.url} broke: {exc!r}") from None
            except httpx.HTTPError as exc:
                raise protocol_error(f"unreadable stream from {self._client.url}: {exc}") from None
            try:
                if chunk is None:
                    self._eof = True
                    self._payloads.extend(self._sse.close())
                else:
                    if self._head is None:
                        self._head = chunk
                    self._payloads.extend(self._sse.feed(chunk))
            except ValueError as exc:
                raise protocol_error(f"{self._client.url}: {exc}") from None
        self._got_event = True
        return self._payloads.popleft()

    async def _read_to_end(self) -> None:
        """Read what is left of a finished stream's body, briefly.

        Servers end the body right after ``[DONE]``; reading that end lets httpx
        return the connection to its pool, so the next call needs no new TCP
        (or TLS) handshake. A server that keeps the body open longer than
        :data:`CLOSE_GRACE` loses its connection instead (closed, as before).
        """
        reads = self._reads
        if reads is None or self._eof:
            return
        with trio.move_on_after(CLOSE_GRACE), contextlib.suppress(httpx.HTTPError):
            while await anext(reads, None) is not None:
                pass
            self._eof = True

    async def _close_response(self) -> None:
        response, self._response = self._response, None
        reads, self._reads = self._reads, None
        if response is None:
            return
        # Shielded: a cancelled turn must still drop the connection, or the upstream
        # keeps generating (and billing) for nobody.
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE):
            await response.aclose()
            if reads is not None:
                await _finish_reads(reads)


async def _finish_reads(reads: AsyncIterator[bytes]) -> None:
    """Run httpx's byte iterator to its end after its response was closed.

    It is a stack of nested async generators (encode/httpx#3686); ``aclose()`` on
    the outer one leaves the inner ones suspended, and trio warns when it finalizes
    them. Resuming the outer one instead lets the innermost read fail on the closed
    connection (or see the end of the body), which unwinds every layer.
    """
    with contextlib.suppress(Exception):
        while await anext(reads, None) is not None:
            pass


async def _read_capped(response: httpx.Response) -> bytes:
    """The first :data:`_MAX_ERROR_BODY` bytes of an error response's body.

    The rest is read and dropped rather than abandoned mid-iteration (see
    :func:`_finish_reads`); the caller's deadline bounds the time this takes.
    """
    body = b""
    async for part in response.aiter_bytes():
        if len(body) < _MAX_ERROR_BODY:
            body += part[: _MAX_ERROR_BODY - len(body)]
    return body
