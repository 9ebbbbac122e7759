"""The neutral settings a model provider is opened from (a value, not behaviour)."""

from __future__ import annotations

from attrs import field, frozen


@frozen
class ProviderSettings:
    """How to open a model provider; each provider reads the fields it needs.

    Attributes:
        name: the provider (a key of :data:`~agents.model.PROVIDERS`).
        url: base URL of the API, version included (``http://localhost:8000/v1``).
        model: model name used when a request names none.
        api_key: sent as a bearer token when set (kept out of ``repr``).
        connect_timeout: seconds to connect.
        first_token_timeout: seconds from a request to its first event.
        idle_timeout: seconds between two events once streaming (bytes that
            complete no event, such as ``:`` keep-alive comments, do not count).
        retries: retries after the first attempt, before the first token only.
        backoff_base: seconds before the first retry (doubling, jittered).
        max_connections: concurrent connections to the API.
        max_keepalive: idle connections kept for reuse.
        pace: seconds between streamed chunks (the scripted model).
    """

    name: str = "scripted"
    url: str = "https://api.openai.com/v1"
    model: str = "scripted"
    api_key: str | None = field(default=None, repr=False)
    connect_timeout: float = 10.0
    first_token_timeout: float = 60.0
    idle_timeout: float = 60.0
    retries: int = 3
    backoff_base: float = 0.5
    max_connections: int = 100
    max_keepalive: int = 100
    pace: float = 0.0
