"""Request helpers shared by the REST and SSE routes: auth, ownership, bodies, parameters."""

from __future__ import annotations

import math

from quart import request
from werkzeug.exceptions import RequestEntityTooLarge

from sessions import JSON, JSONObject, Session

from ._auth import bearer_token
from ._errors import ApiError, bad_request, not_found, too_large, unauthorized
from ._json_input import INT_MAX, decode_json
from ._state import ServerState


def authenticate(state: ServerState, *, allow_query_token: bool = False) -> str:
    """The principal of the current request.

    ``allow_query_token`` admits ``?access_token=`` (for ``EventSource``, which
    cannot set headers).

    Raises:
        ApiError: 401 without a valid token.
    """
    token = bearer_token(request.headers.get("Authorization"))
    if token is None and allow_query_token:
        token = request.args.get("access_token")
    principal = state.auth.principal(token)
    if principal is None:
        raise unauthorized()
    return principal


async def owned_session(state: ServerState, principal: str, session_id: str) -> Session:
    """The live session *session_id* if *principal* owns it.

    Raises:
        ApiError: 404 when it does not exist, was deleted or belongs to someone
            else (the three are indistinguishable on purpose).
    """
    session = await load_owned(state, principal, session_id)
    if session is None:
        raise not_found()
    return session


async def load_owned(state: ServerState, principal: str, session_id: str) -> Session | None:
    if len(session_id) > 200:
        return None
    session = await state.store.get_session(session_id)
    if session is None or session.deleted or session.owner != principal:
        return None
    return session


async def read_json(*, required: bool = True) -> JSON:
    """The request body decoded as JSON (``None`` when empty and not *required*).

    Raises:
        ApiError: 413 over the size limit, 400 ``bad_json`` when not valid JSON,
            400 ``too_deep`` / ``invalid_number`` / ``invalid_text`` for JSON
            the boundary refuses (see ``_json_input``).
    """
    try:
        raw = await request.get_data(as_text=False)
    except RequestEntityTooLarge:
        raise too_large(request.max_content_length or 0) from None
    if not raw.strip():
        if required:
            raise bad_request("bad_json", "request body must be a JSON value")
        return None
    return decode_json(raw, "request body")


async def read_json_object(*, required: bool = True) -> JSONObject:
    """Like :func:`read_json`, insisting on an object (``{}`` when empty and optional)."""
    value = await read_json(required=required)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request("bad_json", "request body must be a JSON object")
    return value


def int_arg(name: str, default: int, *, minimum: int = 0, maximum: int = INT_MAX) -> int:
    """Query parameter *name* as an integer within bounds (at most SQLite's 2**63 - 1).

    Raises:
        ApiError: 400 ``bad_parameter`` naming the parameter.
    """
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    return parse_int(raw, f"query parameter {name!r}", minimum=minimum, maximum=maximum)


def parse_int(raw: str, what: str, *, minimum: int = 0, maximum: int = INT_MAX) -> int:
    """*raw* (a query parameter or header, described as *what*) as a bounded integer.

    Raises:
        ApiError: 400 ``bad_parameter``.
    """
    # Digits only (int() would also take "+1", " 1", "1_000" and 4,000 digits).
    digits = raw.isascii() and raw.isdigit() and len(raw) <= 19
    if not digits or not minimum <= int(raw) <= maximum:
        raise bad_request(
            "bad_parameter", f"{what} must be an integer between {minimum} and {maximum}"
        )
    return int(raw)


def rate_limit(state: ServerState, principal: str) -> None:
    """Count one command of *principal* over HTTP.

    Raises:
        ApiError: 429 ``rate_limited`` when over ``commands_per_second``.
    """
    if not state.http_limiter.try_acquire(principal):
        limit = state.config.limits.commands_per_second
        # Whole seconds (the header's unit) until the bucket holds a command again.
        wait = max(1, math.ceil(1 / limit)) if limit > 0 else 1
        raise ApiError(
            429, "rate_limited", f"more than {limit:g} commands per second", retry_after=wait
        )
