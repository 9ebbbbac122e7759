"""Cross-origin access for browser clients: CORS on the API, ``Origin`` on WebSocket upgrades.

Pages on the runtime's own origin (its web console) need nothing. A page on
another origin may call the API only if that origin is configured
(``--cors-origins``, ``AGENT_RUNTIME_CORS_ORIGINS``, ``[server] cors_origins``;
none by default; ``*`` allows any):

- every ``/v1/...`` and ``/health`` response to an allowed ``Origin`` carries
  ``Access-Control-Allow-Origin: <that origin>`` and ``Vary: Origin``, and
  exposes the headers a client reads (``Retry-After``);
- a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from an allowed
  origin is answered ``204`` with the allowed methods and request headers
  (``Authorization``, ``Content-Type``, ``Last-Event-ID``, ``Accept``) and a
  10-minute ``Access-Control-Max-Age``;
- a disallowed origin gets no CORS header at all (its preflight is still
  ``204``), so the browser blocks the call;
- credentials: the API authenticates with a bearer token (header, or
  ``?access_token=`` for ``EventSource``), never with cookies, so
  ``Access-Control-Allow-Credentials`` is never sent and pages must not use
  ``credentials: "include"``.

WebSocket upgrades carry ``Origin`` too but are not covered by CORS; when origins
are configured, an upgrade whose ``Origin`` is neither the server's own nor an
allowed one is refused with ``403 origin_not_allowed`` (clients that send no
``Origin``, such as IDE plugins, are not browsers and are let through).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from quart import Response, request
from quart_trio import QuartTrio

from ._config import parse_origin
from ._state import ServerState

ALLOW_METHODS: Final = "GET, POST, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS: Final = "Authorization, Content-Type, Last-Event-ID, Accept"
EXPOSE_HEADERS: Final = "Retry-After"
MAX_AGE: Final = "600"
# Paths that answer cross-origin calls (the console's static files do not need to).
_API_PREFIXES: Final = ("/v1/", "/health", "/metrics")


class OriginPolicy:
    """Which browser origins may use the API (see the module docstring)."""

    def __init__(self, origins: Iterable[str]) -> None:
        configured = tuple(origins)
        self.any = "*" in configured
        self.origins = frozenset(o for o in configured if o != "*")

    @property
    def configured(self) -> bool:
        return self.any or bool(self.origins)

    def allows(self, origin: str) -> bool:
        if self.any:
            return True
        try:
            return parse_origin(origin) in self.origins
        except ValueError:
            return False  # "null" (sandboxed pages, file://) and anything malformed


def same_origin(origin: str, host: str | None, scheme: str) -> bool:
    """Whether *origin* is the server's own (the ``Host`` the request was sent to)."""
    if host is None:
        return False
    try:
        return parse_origin(origin) == parse_origin(f"{scheme}://{host}")
    except ValueError:
        return False


def websocket_origin_refused(policy: OriginPolicy, origin: str | None, host: str | None) -> bool:
    """An upgrade from a browser page the configured origins do not cover."""
    if not policy.configured or origin is None or policy.allows(origin):
        return False
    return not same_origin(origin, host, "http") and not same_origin(origin, host, "https")


def register(app: QuartTrio, state: ServerState) -> None:
    policy = OriginPolicy(state.config.cors_origins)

    def cross_origin() -> str | None:
        origin = request.headers.get("Origin")
        if origin is None or not request.path.startswith(_API_PREFIXES):
            return None
        return origin if policy.allows(origin) else None

    @app.before_request
    async def _preflight() -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        response = Response(b"", status=204)
        origin = cross_origin()
        if origin is not None:
            response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = MAX_AGE
        return response

    @app.after_request
    async def _allow(response: Response) -> Response:
        origin = cross_origin()
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = "*" if policy.any else origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        if policy.configured and request.path.startswith(_API_PREFIXES):
            response.vary.add("Origin")  # the answer depends on the Origin header
        return response
