"""The connected :class:`~server.acp._link.RuntimeLink`: a running server, over HTTP.

``agent-runtime acp --connect URL --token T`` drives a server's sessions (as the
token's principal) instead of opening a store itself:

- sessions, agents and the event log over REST (docs/protocol.md §8);
- commands with ``POST /v1/sessions/{id}/commands`` (§3), whose answer is the ack,
  sent once the effect is committed. A command keeps its id across retries, so a
  resend after a lost answer is harmless (the server says ``duplicate``);
- following a session over its WebSocket (§2): ``hello {after: cursor}``, then
  events in seq order. After a dropped connection (network, server restart, 1013
  slow consumer, 1001 shutdown) it reconnects with backoff from the last seq
  handed to the sink: no gap, no duplicate (:mod:`._connected_follow`).

Bad answers (not JSON, wrong shape, HTTP errors) become :class:`LinkError`; a
refused command becomes a ``rejected`` ack, as with the embedded link.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Final

import httpx

from agents.mcp import McpServerConfig
from server.client import ClientError
from server.client import base_url as client_base_url
from sessions import JSON, JSONObject

from ._connected_follow import SessionFollower
from ._link import AgentInfo, LinkError, ModelChoices, SessionInfo, SessionPage

log = logging.getLogger("agent_runtime.acp")

# What the runtime waits for an IDE tool by default (agents.RuntimeConfig.tool_timeout);
# the server does not publish its own setting.
DEFAULT_TOOL_TIMEOUT: Final = 600.0
# Statuses a command's POST answers with a rejected ack in its body (§3).
_ACK_STATUSES: Final = {200, 400, 409, 429, 503}


def base_url(url: str) -> str:
    """*url* as the server's HTTP base: no trailing slash, ``ws(s)`` → ``http(s)``.

    Raises:
        ValueError: not an http(s) or ws(s) URL with a host.
    """
    try:
        return client_base_url(url)
    except ClientError as error:
        raise ValueError(str(error)) from None


def _error_of(response: httpx.Response) -> LinkError:
    """The server's ``{"error": {"code", "message"}}`` (or the status) as a LinkError."""
    code, message = f"http_{response.status_code}", response.reason_phrase or "request failed"
    try:
        body: JSON = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        if isinstance(error.get("code"), str):
            code = str(error["code"])
        if isinstance(error.get("message"), str) and error["message"]:
            message = str(error["message"])
    return LinkError(code, f"{message} (HTTP {response.status_code} from {response.url})")


def _json_object(response: httpx.Response) -> JSONObject:
    try:
        body: JSON = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise LinkError(
            "bad_response",
            f"{response.url} did not answer with a JSON object; is it an agent-runtime server?",
        )
    return body


def _session(body: JSONObject) -> SessionInfo:
    def number(name: str) -> float:
        value = body.get(name)
        return float(value) if isinstance(value, int | float) else 0.0

    session_id, title, agent = body.get("id"), body.get("title"), body.get("current_agent")
    if not isinstance(session_id, str) or not isinstance(agent, str):
        raise LinkError("bad_response", f"not a session: {json.dumps(body)[:200]}")
    return SessionInfo(
        session_id,
        title if isinstance(title, str) else "",
        agent,
        number("created_at"),
        number("updated_at"),
    )


def _addressable(session_id: str) -> bool:
    """Whether *session_id* can be a session's id in a path (one that could name
    another resource is no session's)."""
    return bool(session_id) and len(session_id) <= 200 and "/" not in session_id


def _rejected(command: JSONObject, code: str, message: str) -> JSONObject:
    command_id = command.get("id")
    return {
        "type": "ack",
        "id": command_id if isinstance(command_id, str) else "",
        "status": "rejected",
        "code": code,
        "error": message,
    }


class ConnectedLink(SessionFollower):
    """A :class:`RuntimeLink` over the server *http* points at (its ``base_url``, and
    the bearer *token* it sends). Use :func:`open_connected_link`.

    Args:
        backoff / max_backoff: first and longest pause between reconnects or retries.
        attempts: consecutive failed tries after which a call (or following) gives up
            with :class:`LinkError` ``unavailable``.
        liveness: seconds without any WebSocket frame (heartbeats come every 15 s)
            after which the connection counts as dead.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        token: str,
        *,
        tool_timeout: float = DEFAULT_TOOL_TIMEOUT,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        attempts: int = 20,
        liveness: float = 45.0,
    ) -> None:
        self._http = http
        self._token = token
        self._tool_timeout = tool_timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.attempts = attempts
        self.liveness = liveness
        self.connections = 0  # WebSocket connections opened so far (tests, diagnostics)

    @property
    def tool_timeout(self) -> float:
        return self._tool_timeout

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: JSONObject | None = None,
        params: dict[str, str | int] | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        """One request; transport errors, 5xx and 429 are retried when *retry*."""
        response, _ = await self._request_counted(
            method, path, body=body, params=params, retry=retry
        )
        return response

    async def _request_counted(
        self,
        method: str,
        path: str,
        *,
        body: JSONObject | None = None,
        params: dict[str, str | int] | None = None,
        retry: bool = True,
    ) -> tuple[httpx.Response, int]:
        """:meth:`_request`, and how many tries failed before its answer."""
        failures = 0
        while True:
            try:
                response = await self._http.request(method, path, json=body, params=params)
            except httpx.TransportError as error:
                if not retry:
                    raise LinkError("unavailable", f"{self._http.base_url}: {error}") from None
                failures += 1
                await self._pause(failures, str(error) or type(error).__name__)
                continue
            if retry and (response.status_code >= 500 or response.status_code == 429):
                failures += 1
                await self._pause(failures, str(_error_of(response)))
                continue
            if response.status_code == 401:
                raise LinkError(
                    "unauthorized", f"the server refused the token: {_error_of(response)}"
                )
            return response, failures

    async def agents(self) -> Sequence[AgentInfo]:
        response = await self._request("GET", "/v1/agents")
        if response.status_code != 200:
            raise _error_of(response)
        items = _json_object(response).get("agents")
        if not isinstance(items, list):
            raise LinkError("bad_response", "GET /v1/agents: no 'agents' list")
        found = []
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                description = item.get("description")
                found.append(
                    AgentInfo(
                        str(item["name"]), description if isinstance(description, str) else ""
                    )
                )
        return found

    async def models(self) -> ModelChoices | None:
        response = await self._request("GET", "/v1/models")
        if response.status_code == 404:
            return None  # a server older than GET /v1/models: no model to offer
        if response.status_code != 200:
            raise _error_of(response)
        body = _json_object(response)
        default, items = body.get("default"), body.get("models")
        if not isinstance(default, str) or not isinstance(items, list):
            raise LinkError("bad_response", "GET /v1/models: no 'default' name or 'models' list")
        names = [
            str(i["name"]) for i in items if isinstance(i, dict) and isinstance(i.get("name"), str)
        ]
        return ModelChoices(default, tuple(dict.fromkeys([default, *names])))

    async def create_session(self, *, instructions: str | None = None) -> SessionInfo:
        body: JSONObject = {} if instructions is None else {"instructions": instructions}
        # Not retried: a creation whose answer was lost would leave a second session.
        response = await self._request("POST", "/v1/sessions", body=body, retry=False)
        if response.status_code != 201:
            raise _error_of(response)
        return _session(_json_object(response))

    async def _on_session(
        self, method: str, session_id: str, ok: int, *, action: str = "", retry: bool = True
    ) -> httpx.Response | None:
        """*method* on the session's resource (+ *action*, e.g. ``/fork``, with an empty
        JSON body); ``None`` when there is no such session, an error unless status *ok*."""
        if not _addressable(session_id):
            return None
        body: JSONObject | None = {} if action else None
        response = await self._request(
            method, f"/v1/sessions/{session_id}{action}", body=body, retry=retry
        )
        if response.status_code == 404:
            return None
        if response.status_code != ok:
            raise _error_of(response)
        return response

    async def load_session(self, session_id: str) -> SessionInfo | None:
        response = await self._on_session("GET", session_id, 200)
        return None if response is None else _session(_json_object(response))

    async def fork_session(self, session_id: str) -> SessionInfo | None:
        # Not retried, like a creation: a fork whose answer was lost would leave two.
        response = await self._on_session("POST", session_id, 201, action="/fork", retry=False)
        return None if response is None else _session(_json_object(response))

    async def delete_session(self, session_id: str) -> bool:
        if not _addressable(session_id):
            return False
        # Retried like a read. A delete whose answer was lost finds the session gone
        # when it is sent again (404): that is this delete done, not "no such session".
        response, failures = await self._request_counted("DELETE", f"/v1/sessions/{session_id}")
        if response.status_code == 404:
            return failures > 0
        if response.status_code != 204:
            raise _error_of(response)
        return True

    async def list_sessions(self, *, cursor: str | None = None, limit: int = 50) -> SessionPage:
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = await self._request("GET", "/v1/sessions", params=params)
        if response.status_code != 200:
            raise _error_of(response)
        body = _json_object(response)
        items, next_cursor = body.get("sessions"), body.get("next_cursor")
        if not isinstance(items, list):
            raise LinkError("bad_response", "GET /v1/sessions: no 'sessions' list")
        sessions = [_session(item) for item in items if isinstance(item, dict)]
        return SessionPage(sessions, next_cursor if isinstance(next_cursor, str) else None)

    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int = 500
    ) -> Sequence[JSONObject]:
        """Up to *limit* events, in pages of at most 1000 (the server's cap)."""
        events: list[JSONObject] = []
        cursor = after
        while len(events) < limit:
            params: dict[str, str | int] = {
                "after": cursor,
                "limit": min(limit - len(events), 1000),
            }
            response = await self._request(
                "GET", f"/v1/sessions/{session_id}/events", params=params
            )
            if response.status_code != 200:
                raise _error_of(response)
            body = _json_object(response)
            page = body.get("events")
            if not isinstance(page, list):
                raise LinkError("bad_response", "GET events: no 'events' list")
            for event in page:
                seq = event.get("seq") if isinstance(event, dict) else None
                if not isinstance(event, dict) or not isinstance(seq, int) or seq != cursor + 1:
                    raise LinkError(
                        "bad_response", f"GET events: event out of order after {cursor}"
                    )
                events.append(event)
                cursor = seq
            if body.get("has_more") is not True or not page:
                break
        return events

    @asynccontextmanager
    async def session_mcp(
        self, session_id: str, servers: Sequence[McpServerConfig]
    ) -> AsyncIterator[None]:
        # The runtime runs elsewhere: it cannot start the editor's commands, and its
        # own [mcp.servers] apply. Say so rather than drop them silently.
        if servers:
            log.warning(
                "session %s: the client's %d MCP server(s) are not mounted in --connect mode; "
                "configure them on the server ([mcp.servers.NAME])",
                session_id,
                len(servers),
            )
        yield

    async def submit(self, session_id: str, command: JSONObject) -> JSONObject:
        """POST the command (retried with the same id when the answer is lost)."""
        failures = 0
        while True:
            try:
                response = await self._http.post(
                    f"/v1/sessions/{session_id}/commands", json=command
                )
            except httpx.TransportError as error:
                failures += 1
                await self._pause(failures, str(error) or type(error).__name__)
                continue
            status = response.status_code
            if status == 401:
                raise LinkError(
                    "unauthorized", f"the server refused the token: {_error_of(response)}"
                )
            if status == 404:
                return _rejected(command, "not_found", f"session {session_id!r} not found")
            body: JSON = None
            with suppress(ValueError):
                body = response.json()
            ack = body.get("ack", body) if isinstance(body, dict) else None
            if status in _ACK_STATUSES and isinstance(ack, dict) and ack.get("type") == "ack":
                if status == 429 or (status == 503 and ack.get("code") != "shutting_down"):
                    failures += 1  # rate limited or storage unavailable: retryable
                    await self._pause(failures, str(_error_of(response)))
                    continue
                return ack
            if status < 300:
                raise LinkError("bad_response", f"{response.url} answered a command with no ack")
            if status >= 500:
                failures += 1
                await self._pause(failures, str(_error_of(response)))
                continue
            refused = _error_of(response)
            return _rejected(command, refused.code, refused.message)


@asynccontextmanager
async def open_connected_link(
    url: str, token: str, *, tool_timeout: float = DEFAULT_TOOL_TIMEOUT, attempts: int = 20
) -> AsyncIterator[ConnectedLink]:
    """A :class:`ConnectedLink` to the server at *url*, checked with ``GET /v1/agents``.

    Raises (on entering):
        LinkError: bad URL, server unreachable, token refused, not an agent-runtime server.
    """
    try:
        base = base_url(url)
    except ValueError as error:
        raise LinkError("invalid_request", f"--connect {error}") from None
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        link = ConnectedLink(http, token, tool_timeout=tool_timeout, attempts=1)
        await link.agents()  # at start, fail fast: nobody is waiting for a retry
        link.attempts = attempts
        yield link
