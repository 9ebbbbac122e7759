"""The server branch of the error tree (root: :class:`sessions.AgentRuntimeError`)::

    ServerError
    ├── ConfigurationError    the serve configuration is invalid or unsafe (refuse to start)
    └── ApiError              a request cannot be served; carries HTTP status and ``code``

Errors from quart, hypercorn and werkzeug are translated into :class:`ApiError`
responses once, in ``_app.py``; handlers raise only this tree.
"""

from __future__ import annotations

from sessions import AgentRuntimeError, JSONObject


class ServerError(AgentRuntimeError):
    """Base of errors raised by the server package."""


class ConfigurationError(ServerError):
    """The configuration is invalid, or unsafe to serve with (e.g. no tokens off loopback)."""


class ApiError(ServerError):
    """A client error with an HTTP status and a machine-readable ``code``.

    Rendered as ``{"error": {"code": ..., "message": ...}}``; on WebSocket as an
    ``error`` frame with the same code.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def to_json(self) -> JSONObject:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


def unauthorized(message: str = "missing or invalid bearer token") -> ApiError:
    return ApiError(401, "unauthorized", message)


def not_found(what: str = "session") -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"message exceeds the limit of {limit} bytes")


def rate_limited(message: str) -> ApiError:
    return ApiError(429, "rate_limited", message)
