"""The ``openai`` provider: any OpenAI-compatible streaming ``/chat/completions`` (SPEC §5).

Failure policy, decided once here so the turn runner only sees
:class:`ModelError` / :class:`ModelTimeout`:

- Connect errors, 429, 5xx and a connection lost before the first chunk are retried
  with exponential backoff, but only while nothing has been handed to the caller:
  after that a retry would duplicate text the user already saw.
- Other 4xx responses fail at once with the upstream's own message; a 400 or 413
  saying the request exceeds the model's context window has ``code``
  ``"context_overflow"`` instead (see :func:`is_context_overflow`): the request
  must shrink, not be re-sent.
- Timeouts: connect (httpx), first token (request start → first event), idle
  (between reads once streaming); they use trio deadlines so a half-open
  connection cannot hang a turn.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import trio

from sessions import JSON, JSONObject

from .._core._model import ModelClient, ModelDelta, ModelRequest
from .._errors import ModelError, ModelTimeout
from ._openai_wire import (
    PROVIDER,
    ChunkAssembler,
    SSEDecoder,
    UpstreamError,
    error_message,
    is_context_overflow,
    protocol_error,
    request_body,
    request_text,
)
from ._settings import ProviderSettings

logger = logging.getLogger(__name__)

_MAX_ERROR_BODY = 64 * 1024
_MAX_RETRY_AFTER = 30.0
# Backoff doubles per attempt; capped so that a large configured retry count means
# "keep trying every half minute", not a wait of days (or a float overflow).
_MAX_BACKOFF = 30.0
_CLOSE_GRACE = 2.0


class _Transient(Exception):
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


class OpenAIClient:
    """A :class:`~agents.ModelClient` for an OpenAI-compatible server.

    ``base_url`` includes the API version (``http://localhost:8000/v1``); ``model``
    is used when a request does not name one. Prefer :func:`open_openai_client`,
    which closes the connection pool; otherwise call :meth:`aclose`.

    Timeouts are positive seconds. ``max_retries`` counts retries after the first
    attempt (3: at most 4 requests); the wait before retry *n* is ``backoff_base``
    doubled *n* - 1 times, jittered and capped at 30 s, or the upstream's
    ``Retry-After`` when longer (also capped at 30 s).

    Raises:
        ValueError: a URL that is not http(s), a timeout that is not positive, or
            a negative ``max_retries``.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        connect_timeout: float = 10,
        first_token_timeout: float = 60,
        idle_timeout: float = 60,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        max_connections: int = 100,
        max_keepalive: int = 20,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        url = httpx.URL(base_url.rstrip("/") + "/chat/completions")
        if url.scheme not in ("http", "https"):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        for what, seconds in (
            ("connect_timeout", connect_timeout),
            ("first_token_timeout", first_token_timeout),
            ("idle_timeout", idle_timeout),
        ):
            if not seconds > 0:
                raise ValueError(f"{what} must be a positive number of seconds, got {seconds!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must not be negative, got {max_retries!r}")
        if max_connections < 1 or max_keepalive < 0:
            raise ValueError(
                "max_connections must be at least 1 and max_keepalive not negative, got "
                f"{max_connections!r} and {max_keepalive!r}"
            )
        self.url = url
        self.model = model
        self.connect_timeout = connect_timeout
        self.first_token_timeout = first_token_timeout
        self.idle_timeout = idle_timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        headers = {"accept": "text/event-stream"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        # Read deadlines are trio's job (first-token / idle); httpx only bounds connecting.
        timeout = httpx.Timeout(connect=connect_timeout, read=None, write=idle_timeout, pool=None)
        # Concurrent streams beyond max_connections wait for a free connection
        # (pool=None: no timeout of its own; the first-token deadline bounds it).
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_keepalive
        )
        self._http = httpx.AsyncClient(
            transport=transport, headers=headers, timeout=timeout, limits=limits
        )

    @property
    def name(self) -> str:
        return PROVIDER

    def request_body(self, request: ModelRequest) -> JSONObject:
        """The JSON body sent for *request*."""
        return request_body(request, self.model)

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[ModelDelta]]:
        """Stream one completion: text deltas, then assembled tool calls, usage and finish.

        Raises (from iterating):
            ModelTimeout: connect, first-token or idle timeout.
            ModelError: the upstream failed, after any retries allowed before the
                first delta; ``retryable`` is false once deltas were delivered.

        Cancellation: leaving the context for any reason, including cancellation,
        closes the HTTP response at once (shielded, so the upstream sees the
        disconnect and stops generating).
        """
        deltas = _DeltaStream(self, request.model or self.model, request_text(request, self.model))
        try:
            yield deltas
        finally:
            await deltas.aclose()

    async def aclose(self) -> None:
        """Close the connection pool.

        Cancellation: shielded for a short grace period, so sockets are not leaked.
        """
        with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_GRACE):
            await self._http.aclose()

    def _retry_delay(self, attempt: int, failure: _Transient) -> float:
        delay = min(self.backoff_base * 2.0 ** min(attempt - 1, 32), _MAX_BACKOFF)
        # Jitter spreads the retries of many turns hitting the same overloaded server.
        delay *= 0.5 + random.random() / 2
        if failure.retry_after is not None:
            delay = max(delay, min(failure.retry_after, _MAX_RETRY_AFTER))
        return delay


@asynccontextmanager
async def open_openai_client(
    base_url: str,
    model: str,
    api_key: str | None = None,
    *,
    connect_timeout: float = 10,
    first_token_timeout: float = 60,
    idle_timeout: float = 60,
    max_retries: int = 3,
    backoff_base: float = 0.5,
    max_connections: int = 100,
    max_keepalive: int = 20,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[OpenAIClient]:
    """An :class:`OpenAIClient` whose connection pool is closed on exit.

    Cancellation: the pool is closed even when the block is cancelled.
    """
    client = OpenAIClient(
        base_url,
        model,
        api_key,
        connect_timeout=connect_timeout,
        first_token_timeout=first_token_timeout,
        idle_timeout=idle_timeout,
        max_retries=max_retries,
        backoff_base=backoff_base,
        max_connections=max_connections,
        max_keepalive=max_keepalive,
        transport=transport,
    )
    try:
        yield client
    finally:
        await client.aclose()


def open_from_settings(settings: ProviderSettings) -> AbstractAsyncContextManager[ModelClient]:
    """The registry's factory: :func:`open_openai_client` with *settings*' values."""
    return open_openai_client(
        settings.url,
        settings.model,
        settings.api_key,
        connect_timeout=settings.connect_timeout,
        first_token_timeout=settings.first_token_timeout,
        idle_timeout=settings.idle_timeout,
        max_retries=settings.retries,
        backoff_base=settings.backoff_base,
        max_connections=settings.max_connections,
        max_keepalive=settings.max_keepalive,
    )


class _DeltaStream:
    """One completion's I/O: attempts, deadlines and closing (parsing is ChunkAssembler's).

    A plain async iterator rather than an async generator, so no cancel scope
    ever spans a ``yield`` and closing is explicit (:meth:`aclose`).
    """

    def __init__(self, client: OpenAIClient, model: str, body: str) -> None:
        self._client = client
        self._model = model
        self._body = body.encode()
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
        self._deadline = trio.current_time() + self._client.first_token_timeout
        self._chunks = ChunkAssembler(self._model, str(self._client.url))

    def __aiter__(self) -> _DeltaStream:
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
                if self._chunks.finish_reason is None:
                    raise _Transient("the stream ended before the model finished")
                self._pending += self._chunks.complete()
            else:
                try:
                    self._pending += self._chunks.feed(payload)
                except UpstreamError as exc:
                    raise _Transient(str(exc)) from None
        except _Transient as failure:
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
        http = self._client._http
        url = self._client.url
        request = http.build_request(
            "POST", url, content=self._body, headers={"content-type": "application/json"}
        )
        body = b""
        try:
            with trio.fail_at(self._deadline):
                response = await http.send(request, stream=True)
                content_type: str = response.headers.get("content-type", "")
                # A JSON body means the server ignored "stream": true or sent an error
                # with a 200; anything else is given the benefit of the doubt.
                streaming = "json" not in content_type
                if not response.is_success or not streaming:
                    try:
                        body = await _read_capped(response)
                    finally:
                        await response.aclose()
        except trio.TooSlowError:
            raise self._first_token_timeout() from None
        except httpx.TimeoutException:
            raise _Transient(f"timed out connecting to {url}", timeout=True) from None
        except httpx.TransportError as exc:
            raise _Transient(f"cannot reach {url}: {exc or type(exc).__name__}") from None
        except httpx.HTTPError as exc:
            raise ModelError(f"request to {url} failed: {exc}", code="model_unavailable") from None
        status = response.status_code
        if not response.is_success:
            message = f"{url} answered HTTP {status}: {_error_text(body)}"
            if status == 429 or status >= 500:
                raise _Transient(message, retry_after=_retry_after(response))
            if is_context_overflow(status, _error_value(body)):
                raise ModelError(message, retryable=False, code="context_overflow")
            raise ModelError(message, retryable=False, code="model_rejected")
        if not streaming:
            raise protocol_error(
                f"{url} did not stream (content-type {content_type!r}): {_error_text(body)}"
            )
        self._response = response
        self._reads = response.aiter_bytes()

    def _first_token_timeout(self) -> ModelTimeout:
        after = self._client.first_token_timeout
        return ModelTimeout(
            f"no first token from {self._client.url} within {after:g}s", retryable=True
        )

    async def _next_payload(self) -> str | None:
        """The next event's data, or ``None`` at the end of the stream."""
        assert self._reads is not None
        while not self._payloads:
            if self._eof:
                return None
            deadline = self._deadline
            if self._got_event:
                deadline = trio.current_time() + self._client.idle_timeout
            try:
                with trio.fail_at(deadline):
                    chunk = await anext(self._reads, None)
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
                    f"{self._client.url} sent nothing for {idle:g}s (idle timeout)",
                    retryable=not self._delivered,
                ) from None
            except httpx.TransportError as exc:
                raise _Transient(f"connection to {self._client.url} broke: {exc!r}") from None
            except httpx.HTTPError as exc:
                raise protocol_error(f"unreadable stream from {self._client.url}: {exc}") from None
            try:
                if chunk is None:
                    self._eof = True
                    self._payloads.extend(self._sse.close())
                else:
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
        :data:`_CLOSE_GRACE` loses its connection instead (closed, as before).
        """
        reads = self._reads
        if reads is None or self._eof:
            return
        with trio.move_on_after(_CLOSE_GRACE), contextlib.suppress(httpx.HTTPError):
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
        with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_GRACE):
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
