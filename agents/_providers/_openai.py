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
  (waiting for the next event once streaming: bytes that complete no event, a
  trickle or ``:`` keep-alive comments, do not reset it); they use trio deadlines
  so a half-open or trickling connection cannot hang a turn.
- A 200 that is JSON or HTML, or a stream that ends (``[DONE]`` or not) with no
  output and no ``finish_reason``, is a protocol error, not retried.
"""

from __future__ import annotations

import base64
import importlib.metadata
import random
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import trio

from sessions import JSONObject

from .._core._model import ModelClient, ModelDelta, ModelRequest
from ._http_pool import pooled_transport
from ._openai_stream import CLOSE_GRACE, DeltaStream, Transient
from ._openai_wire import PROVIDER, request_body, request_parts
from ._settings import ProviderSettings

_Transient = Transient  # its name when it was defined here (tests use it)

_MAX_RETRY_AFTER = 30.0
# Backoff doubles per attempt; capped so that a large configured retry count means
# "keep trying every half minute", not a wait of days (or a float overflow).
_MAX_BACKOFF = 30.0


def _user_agent() -> str:
    try:
        return f"agent-runtime/{importlib.metadata.version('agent-runtime')}"
    except importlib.metadata.PackageNotFoundError:
        return "agent-runtime"


# Sent with every call: some gateways refuse requests that name no client.
USER_AGENT = _user_agent()


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
        max_keepalive: int = 100,
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
        # Credentials in the URL (https://user:pass@gateway/v1) are sent as Basic
        # auth, as httpx's client did, and never as part of the request line.
        basic = None
        if url.userinfo:
            pair = f"{url.username}:{url.password}".encode()
            basic = "Basic " + base64.b64encode(pair).decode("ascii")
            url = url.copy_with(userinfo=b"")
        self.url = url
        self.model = model
        self.connect_timeout = connect_timeout
        self.first_token_timeout = first_token_timeout
        self.idle_timeout = idle_timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        headers = {
            "accept": "text/event-stream",
            "accept-encoding": "identity",
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        if basic is not None:
            headers["authorization"] = basic  # the URL's wins, as it did with httpx's client
        self.headers = httpx.Headers(headers)
        # Read deadlines are trio's job (first-token / idle); httpx only bounds connecting.
        # Concurrent streams beyond max_connections wait for a free connection
        # (pool=None: no timeout of its own; the first-token deadline bounds it).
        timeout = httpx.Timeout(connect=connect_timeout, read=None, write=idle_timeout, pool=None)
        self.timeout = timeout.as_dict()
        # Requests go straight to the transport: httpx's client layer (cookies,
        # redirects, auth, event hooks) has nothing to do here and cost ~15 % of a
        # call's CPU. The pool is ours (O(1) per request, _http_pool.py) unless one
        # is given; a proxied URL gets httpx's own transport.
        if transport is None:
            transport = pooled_transport(
                url, max_connections=max_connections, max_keepalive=max_keepalive
            )
        self.transport = transport

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
        deltas = DeltaStream(self, request.model or self.model, request_parts(request, self.model))
        try:
            yield deltas
        finally:
            await deltas.aclose()

    async def aclose(self) -> None:
        """Close the connection pool.

        Cancellation: shielded for a short grace period, so sockets are not leaked.
        """
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE):
            await self.transport.aclose()

    def _retry_delay(self, attempt: int, failure: Transient) -> float:
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
    max_keepalive: int = 100,
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
