"""REST routes of SPEC §7: health, metrics, agents, sessions and their read models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import attrs
import trio
from quart import Response, request
from quart_trio import QuartTrio

from agents import CommandError
from agents.mcp import McpServerStatus, hint_json
from sessions import (
    JSON,
    Approval,
    GroupCommitStore,
    JSONObject,
    Session,
    SessionStore,
    StoreError,
)

from ._cursor import decode_cursor, encode_cursor
from ._errors import STORAGE_RETRY_AFTER, bad_request, command_error
from ._http import authenticate, int_arg, owned_session, read_json_object
from ._metrics import lease_counts
from ._responses import json_response
from ._state import ServerState
from ._stream import check_cursor

MAX_TITLE = 120
MAX_PAGE = 1000
# Seconds /health waits for the database's answer to ``SELECT 1`` (PostgreSQL).
HEALTH_PING_TIMEOUT: Final = 2.0


async def session_json(state: ServerState, session: Session) -> JSONObject:
    (out,) = await sessions_json(state, [session])
    return out


def new_session_json(session: Session) -> JSONObject:
    """A session just made (created, forked), as the API shows it: it runs nothing yet,
    so no replica is asked."""
    return _shown(session, None)


async def sessions_json(state: ServerState, sessions: Sequence[Session]) -> list[JSONObject]:
    """Each session as the API shows it, with its running turn (one store read at most)."""
    running = await state.supervisor.running_turns([s.id for s in sessions])
    return [_shown(s, running.get(s.id)) for s in sessions]


def _shown(session: Session, running_turn: str | None) -> JSONObject:
    return session.to_json() | {"running_turn": running_turn}


def approval_json(approval: Approval) -> JSONObject:
    return {
        "call_id": approval.call_id,
        "turn_id": approval.turn_id,
        "name": approval.name,
        "arguments": approval.arguments,
        "rule": approval.rule,
        "requested_at": approval.requested_at,
        "expires_at": approval.expires_at,
        "status": approval.status.value,
    }


def _title(body: JSONObject, *, required: bool) -> str | None:
    value = body.get("title")
    if value is None:
        if required:
            raise bad_request("invalid_request", "field 'title' (a string) is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad_request("invalid_request", "field 'title' must be a non-empty string")
    return value.strip()[:MAX_TITLE]


def _instructions(body: JSONObject) -> str | None:
    """Field ``instructions``: a string or null (none); the supervisor checks its size."""
    value = body.get("instructions")
    if value is not None and not isinstance(value, str):
        raise bad_request("invalid_request", "field 'instructions' must be a string or null")
    return value


def _only(body: JSONObject, allowed: set[str]) -> None:
    unknown = sorted(body.keys() - allowed)
    if unknown:
        raise bad_request("invalid_request", f"unknown field(s) {', '.join(map(repr, unknown))}")


def _at_seq(body: JSONObject) -> int | None:
    """Field ``at_seq`` of a fork: a seq (an integer ≥ 0), or absent / null for the last."""
    value = body.get("at_seq")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad_request("invalid_request", "field 'at_seq' must be a non-negative integer")
    return value


async def events_page(state: ServerState, session: Session) -> Response:
    """``GET /v1/sessions/{id}/events?after=N&limit=M`` as one JSON page."""
    after = int_arg("after", 0)
    limit = int_arg("limit", 100, minimum=1, maximum=MAX_PAGE)
    events = await state.store.read_events(session.id, after=after, limit=limit + 1)
    if not events:
        await check_cursor(state, session.id, after)
    page = events[:limit]
    body: JSONObject = {
        "events": [event.to_json() for event in page],
        "next_after": page[-1].seq if page else after,
        "has_more": len(events) > limit,
    }
    return json_response(body)


@attrs.define(eq=False)
class _Ping:
    done: trio.Event = attrs.field(factory=trio.Event)
    finished: bool = False
    error: str | None = None


class DatabaseCheck:
    """``/health``'s database probe: one ``SELECT 1`` at a time, shared by concurrent requests.

    ``/health`` needs no token, so a flood of it must not become a flood of
    queries: a request that finds a ping in flight waits for its answer. If the
    request that started it goes away first, a waiter starts the next one.
    """

    def __init__(self, store: SessionStore, timeout: float = HEALTH_PING_TIMEOUT) -> None:
        self._store = store
        self._timeout = timeout
        self._ping: _Ping | None = None

    async def check(self) -> str | None:
        """``None`` if the database answered, else why not (one sentence)."""
        while True:
            ping = self._ping
            if ping is None:
                return await self._lead()
            await ping.done.wait()
            if ping.finished:
                return ping.error

    async def _lead(self) -> str | None:
        self._ping = ping = _Ping()
        try:
            if isinstance(self._store, GroupCommitStore):
                with trio.move_on_after(self._timeout) as deadline:
                    await self._store.ping()
                if deadline.cancelled_caught:
                    ping.error = f"the database did not answer within {self._timeout:g} s"
            ping.finished = True
        except StoreError as error:
            ping.error, ping.finished = str(error), True
        finally:
            self._ping = None
            ping.done.set()
        return ping.error


def register(app: QuartTrio, state: ServerState) -> None:
    database = DatabaseCheck(state.store)

    @app.get("/health")
    async def health() -> Response:
        if state.draining.is_set():
            return json_response({"status": "draining"}, 503)
        store = state.store.health
        body: JSONObject = {"status": "ok", "store": {"ok": True}}
        if not store.ok:
            since = store.degraded_since or 0.0
            body = {
                "status": "degraded",
                "store": {
                    "ok": False,
                    "error": store.error,
                    "degraded_for_s": round(max(0.0, trio.current_time() - since), 3),
                },
            }
        if state.store.replica is not None:  # a database server several replicas share
            error = await database.check()
            body["database"] = "ok" if error is None else "unavailable"
            if error is not None:
                body["status"] = "degraded"
                body["database_error"] = error
            body["replica"] = state.store.replica
            counts = lease_counts(state.store)
            body["leases_held"] = None if counts is None else len(counts.held)
        if body["status"] == "ok":
            return json_response(body)
        response = json_response(body, 503)
        response.headers["Retry-After"] = str(STORAGE_RETRY_AFTER)
        return response

    @app.get("/metrics")
    async def get_metrics() -> Response:
        authenticate(state)
        return Response(
            state.metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.get("/v1/agents")
    async def list_agents() -> Response:
        authenticate(state)
        items: list[JSON] = [
            {
                "name": mode.name,
                "description": mode.description,
                "tools": list[JSON](mode.tool_names()),
                "restriction": mode.restriction,
                "mcp": [str(selector) for selector in mode.mcp],
            }
            for mode in state.supervisor.modes.modes.values()
        ]
        return json_response({"agents": items})

    @app.get("/v1/models")
    async def list_models() -> Response:
        authenticate(state)
        catalog = state.supervisor.config.models
        items: list[JSON] = []
        for name in state.supervisor.known_models():
            limits = catalog.limits(name)
            items.append(
                {
                    "name": name,
                    "context_window": limits.context_window,
                    "max_output_tokens": limits.max_output_tokens,
                }
            )
        return json_response({"default": state.supervisor.config.model, "models": items})

    @app.get("/v1/mcp")
    async def list_mcp_servers() -> Response:
        authenticate(state)
        servers = state.mcp.status() if state.mcp is not None else ()
        return json_response({"servers": [mcp_status_json(server) for server in servers]})

    @app.post("/v1/sessions")
    async def create_session() -> Response:
        principal = authenticate(state)
        body = await read_json_object(required=False)
        _only(body, {"title", "agent", "instructions"})
        agent = body.get("agent")
        if agent is not None and not isinstance(agent, str):
            raise bad_request("invalid_request", "field 'agent' must be a string")
        try:
            # The cap is checked inside the insert's transaction (SessionLimitReached
            # → 429), so concurrent creations cannot overshoot it.
            session = await state.supervisor.create_session(
                principal,
                title=_title(body, required=False),
                agent=agent,
                max_live_sessions=state.config.limits.sessions_per_principal,
                instructions=_instructions(body),
            )
        except CommandError as error:
            raise command_error(error) from None
        return json_response(new_session_json(session), 201)

    @app.get("/v1/sessions")
    async def list_sessions() -> Response:
        principal = authenticate(state)
        limit = int_arg("limit", 50, minimum=1, maximum=MAX_PAGE)
        cursor = request.args.get("cursor")
        before = decode_cursor(cursor) if cursor else None
        sessions = await state.store.list_sessions(principal, limit=limit + 1, before=before)
        page = sessions[:limit]
        next_cursor = encode_cursor(page[-1]) if len(sessions) > limit else None
        items: list[JSON] = list(await sessions_json(state, page))
        return json_response({"sessions": items, "next_cursor": next_cursor})

    @app.get("/v1/sessions/<session_id>")
    async def get_session(session_id: str) -> Response:
        session = await owned_session(state, authenticate(state), session_id)
        # Only a single session's JSON carries its totals: they come from its log.
        body = await session_json(state, session) | {"usage": await state.supervisor.usage(session)}
        return json_response(body)

    @app.patch("/v1/sessions/<session_id>")
    async def patch_session(session_id: str) -> Response:
        session = await owned_session(state, authenticate(state), session_id)
        body = await read_json_object()
        _only(body, {"title", "instructions"})
        # A title, instructions (null clears them), or both, in one write.
        title = _title(body, required="instructions" not in body)
        try:
            session = await state.supervisor.update_session(
                session,
                title=title,
                instructions=_instructions(body) if "instructions" in body else ...,
            )
        except CommandError as error:
            raise command_error(error) from None
        return json_response(await session_json(state, session))

    @app.delete("/v1/sessions/<session_id>")
    async def delete_session(session_id: str) -> Response:
        session = await owned_session(state, authenticate(state), session_id)
        try:
            await state.supervisor.delete_session(session)
        except CommandError as error:
            raise command_error(error) from None
        response = Response(b"", status=204)
        del response.headers["Content-Type"]  # no body, so no type (quart defaults to HTML)
        return response

    @app.post("/v1/sessions/<session_id>/fork")
    async def fork_session(session_id: str) -> Response:
        source = await owned_session(state, authenticate(state), session_id)
        body = await read_json_object(required=False)
        _only(body, {"at_seq", "title"})
        at_seq = _at_seq(body)
        title = _title(body, required=False)
        try:
            fork = await state.supervisor.fork_session(
                source,
                at_seq=at_seq,
                title=title,
                max_live_sessions=state.config.limits.sessions_per_principal,
            )
        except CommandError as error:
            raise command_error(error) from None
        out = new_session_json(fork.session)
        out["forked_from"] = {"session_id": source.id, "at_seq": fork.at_seq}
        return json_response(out, 201)

    @app.get("/v1/sessions/<session_id>/messages")
    async def get_messages(session_id: str) -> Response:
        session = await owned_session(state, authenticate(state), session_id)
        history = await state.supervisor.history(session)
        items: list[JSON] = [message.to_json() for message in history]
        return json_response({"messages": items})

    @app.get("/v1/sessions/<session_id>/approvals")
    async def get_approvals(session_id: str) -> Response:
        session = await owned_session(state, authenticate(state), session_id)
        pending = await state.store.pending_approvals(session.id)
        items: list[JSON] = [approval_json(a) for a in pending]
        return json_response({"approvals": items})


def mcp_status_json(server: McpServerStatus) -> JSON:
    """One MCP server for ``GET /v1/mcp``: its state and the tools it offers now."""
    return {
        "name": server.name,
        "transport": server.transport,
        "state": server.state,
        "trusted": server.trusted,
        "restarts": server.restarts,
        "last_error": server.last_error,
        "pid": server.pid,
        "tools": [
            {
                "name": tool.name,
                "tool": tool.tool,
                "description": tool.description,
                "input_schema": tool.parameters,
                "annotations": hint_json(tool.hints),
            }
            for tool in server.tools
        ],
    }
