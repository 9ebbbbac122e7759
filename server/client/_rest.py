"""The REST side of the protocol (docs/protocol.md §8): URLs, error bodies, the event log.

Every answer is checked the same way: a refusal becomes :class:`ClientError` with
the server's own ``{"error": {"code", "message"}}``, while an answer worth waiting
for (5xx, 429) becomes :class:`ServerBusy`, a transport error the link retries.
"""

from __future__ import annotations

from typing import Final

import attrs
import httpx

from sessions import JSON, JSONObject

from ._errors import ClientError, ServerBusy

PAGE: Final = 1000  # the server's largest page of events


def base_url(url: str) -> str:
    """*url* as the server's HTTP base: no trailing slash, ``ws(s)`` → ``http(s)``.

    Raises:
        ClientError: ``invalid_request``: not an http(s) or ws(s) URL with a host.
    """
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    for ws, http in (("ws://", "http://"), ("wss://", "https://")):
        if url.startswith(ws):
            url = http + url.removeprefix(ws)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise ClientError("invalid_request", f"{url!r} is not a valid URL: {error}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ClientError(
            "invalid_request", f"{url!r} must be an http(s):// or ws(s):// URL with a host"
        )
    # Only now: cut first, "http://" would be "http:", read as a bare host name.
    return url.rstrip("/")


def session_ws_url(http: httpx.AsyncClient, session_id: str) -> str:
    """The WebSocket URL of *session_id* on the server *http*'s ``base_url`` points at."""
    base = str(http.base_url).rstrip("/")
    return "ws" + base.removeprefix("http") + f"/v1/sessions/{session_id}/ws"


def error_body(response: httpx.Response) -> tuple[str | None, str | None]:
    """``(code, message)`` of the server's error body, when it has one."""
    try:
        body: JSON = response.json()
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    fields = error if isinstance(error, dict) else body
    code, message = fields.get("code"), fields.get("message")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) and message else None,
    )


# Statuses that waiting does not change and that agent-runtime does not send without
# its error body: another server (or a path prefix) answered.
_NOT_THE_API = frozenset({404, 405, 501, 505})


def _requested(response: httpx.Response) -> str:
    try:
        request = response.request
    except RuntimeError:  # a response made by hand (tests)
        return "the server"
    return f"{request.method} {request.url}"


def raise_for_status(response: httpx.Response, session_id: str | None = None) -> None:
    """Nothing for a success; otherwise the error the answer means.

    Raises:
        ClientError: the token was refused (``unauthorized``), no such session for
            it (``not_found``, with the server's error body), an answer that is not agent-runtime's
            (``bad_response``: a 404, 405, 501 or 505 without its error body), or
            another refusal (the server's code).
        ServerBusy: another 5xx, or a 429: the server may come back, or want us slower.
    """
    status = response.status_code
    if status < 400:
        return
    code, message = error_body(response)
    tag = f"HTTP {status} {code}" if code else f"HTTP {status}"
    if status == 401:
        text = f"the server refused the token ({tag}: {message or 'unauthorized'})"
        raise ClientError("unauthorized", text, status=status)
    if status == 404 and session_id is not None and code is not None:
        # Only with our error body: a bare 404 is another server's (below), and
        # "no such session" would send the user after a valid id.
        text = f"no session {session_id!r} for this token ({tag})"
        raise ClientError("not_found", text, status=status)
    if code is None and status in _NOT_THE_API:
        # No error body of ours: the URL most likely names another server or path.
        text = f"{_requested(response)} answered {tag} {response.reason_phrase}".rstrip()
        raise ClientError("bad_response", f"{text}; is it an agent-runtime server?", status=status)
    if (status >= 500 and status not in _NOT_THE_API) or status == 429:
        raise ServerBusy(f"{message or response.reason_phrase} ({tag})")
    text = f"{message or response.reason_phrase or 'request refused'} ({tag})"
    raise ClientError(code or f"http_{status}", text, status=status)


@attrs.frozen
class EventPage:
    """One page of ``GET /v1/sessions/{id}/events``."""

    events: list[JSONObject]
    has_more: bool


async def read_events(http: httpx.AsyncClient, session_id: str, after: int) -> EventPage:
    """The events after seq *after* (one page, at most :data:`PAGE`).

    Raises:
        ClientError: refused, or the answer is not the protocol's.
        ServerBusy / httpx.TransportError: worth retrying.

    Cancellation: safe.
    """
    response = await http.get(
        f"/v1/sessions/{session_id}/events", params={"after": after, "limit": PAGE}
    )
    raise_for_status(response, session_id)
    try:
        body: JSON = response.json()
    except ValueError:
        body = None
    page = body.get("events") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(page, list):
        raise ClientError(
            "bad_response",
            f"{response.url} did not answer with a page of events; is it an agent-runtime server?",
        )
    events = [event for event in page if isinstance(event, dict)]
    return EventPage(events, body.get("has_more") is True and bool(events))
