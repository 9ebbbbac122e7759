"""JSON and streamed responses, shared by every route module.

Streamed bodies (SSE) are not async generators: a :class:`StreamResponse` carries
a coroutine function that the HTTP connection task awaits with a body writer
(see ``_app._HTTPConnection``), so the stream's subscriptions and scopes nest
normally inside that task, and a client disconnect cancels it like any other
request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from quart import Response
from quart.wrappers.response import Response as QuartResponse

from sessions import JSON, dumps

from ._errors import ApiError

JSON_TYPE: Final = "application/json"

BodyWriter = Callable[[bytes], Awaitable[None]]


def json_response(data: JSON, status: int = 200) -> Response:
    return Response(dumps(data), status=status, content_type=JSON_TYPE)


def error_response(error: ApiError) -> Response:
    response = json_response(error.to_json(), error.status)
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    if error.status == 413:
        # The unread body is still on the wire: this connection cannot be reused.
        response.headers["Connection"] = "close"
    return response


class StreamResponse(QuartResponse):
    """A streamed body produced by ``run(write)`` in the connection's own task."""

    def __init__(
        self,
        run: Callable[[BodyWriter], Awaitable[None]],
        *,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        # An (empty) iterable body, so no Content-Length is set and HTTP/1.1 chunks.
        super().__init__([], status=200, headers=headers, content_type=content_type)
        self.run_stream = run
        self.timeout = None
