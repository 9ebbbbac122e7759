"""The quart-trio application: its routes, JSON errors and the streaming connection.

Exceptions are translated here, once: :class:`ApiError`, store errors and
werkzeug's HTTP errors become ``{"error": {"code", "message"}}`` with their
status; anything else is a bug, logged with its traceback and answered with a
plain 500. :class:`_HTTPConnection` runs a :class:`StreamResponse`'s body in the
connection's own task.
"""

from __future__ import annotations

import logging
from typing import Final

from hypercorn.typing import ASGISendCallable, HTTPResponseBodyEvent, HTTPResponseStartEvent
from quart import Response, request
from quart.utils import encode_headers
from quart.wrappers.response import Response as QuartResponse
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.wrappers import Response as WerkzeugResponse

from sessions import StoreError

from . import _console, _cors, _rest, _sse, _ws
from ._errors import ApiError, store_error
from ._responses import StreamResponse, error_response
from ._state import ServerState

logger = logging.getLogger("agent_runtime.server")


class _HTTPConnection(TrioASGIHTTPConnection):
    async def _send_response(
        self, send: ASGISendCallable, response: QuartResponse | WerkzeugResponse
    ) -> None:
        if not isinstance(response, StreamResponse):
            await super()._send_response(send, response)
            return
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": encode_headers(response.headers),
            "trailers": False,
        }
        await send(start)

        async def write(chunk: bytes) -> None:
            body: HTTPResponseBodyEvent = {
                "type": "http.response.body",
                "body": chunk,
                "more_body": True,
            }
            await send(body)

        await response.run_stream(write)
        end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(end)


class AgentRuntimeApp(QuartTrio):
    asgi_http_class = _HTTPConnection


# werkzeug's HTTP errors that clients can cause, as stable codes.
_HTTP_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def create_app(state: ServerState) -> AgentRuntimeApp:
    """The application with every route of SPEC §7 and §3.4 registered."""
    app = AgentRuntimeApp("agent_runtime")
    app.config.update(
        # Streams (SSE, WebSocket) live as long as the client wants; never cut them.
        RESPONSE_TIMEOUT=None,
        # Time allowed to upload a request body (bounded by MAX_CONTENT_LENGTH too).
        BODY_TIMEOUT=120,
        MAX_CONTENT_LENGTH=state.config.limits.max_message_bytes,
        PROVIDE_AUTOMATIC_OPTIONS=True,
    )

    @app.errorhandler(ApiError)
    async def _api_error(error: ApiError) -> Response:
        state.metrics.client_errors.labels(error.code).inc()
        return error_response(error)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 413:
            message = f"body exceeds the limit of {state.config.limits.max_message_bytes} bytes"
        elif isinstance(error, NotFound):
            message = f"no such endpoint: {request.method} {request.path} (see docs/protocol.md §8)"
        elif isinstance(error, MethodNotAllowed):
            allowed = ", ".join(sorted(error.valid_methods or ()))
            message = f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
        else:
            message = error.description or error.name
        code = _HTTP_CODES.get(status, "http_error")
        state.metrics.client_errors.labels(code).inc()
        return error_response(ApiError(status, code, message))

    @app.errorhandler(StoreError)
    async def _store_error(error: StoreError) -> Response:
        api = store_error(error)
        if api.status == 500:
            logger.error("store error in request handler", exc_info=error)
            state.metrics.internal_errors.inc()
        else:
            state.metrics.client_errors.labels(api.code).inc()
        return error_response(api)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        # Only real bugs get here: bad input is an ApiError or an HTTPException.
        logger.error("unhandled error in request handler", exc_info=error)
        state.metrics.internal_errors.inc()
        return error_response(ApiError(500, "internal", "internal server error"))

    _cors.register(app, state)
    _console.register(app)
    _rest.register(app, state)
    _sse.register(app, state)
    _ws.register(app, state)
    return app
