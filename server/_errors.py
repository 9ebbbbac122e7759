"""The server branch of the error tree (root: :class:`sessions.AgentRuntimeError`)::

    ServerError
    ├── ConfigurationError    the serve configuration is invalid or unsafe (refuse to start)
    └── ApiError              a request cannot be served; carries HTTP status and ``code``

Errors from quart, hypercorn and werkzeug are translated into :class:`ApiError`
responses once, in ``_app.py``; handlers raise only this tree.
"""

from __future__ import annotations

from typing import Final

from agents import CommandError
from sessions import (
    AgentRuntimeError,
    JSONObject,
    LeaseHeld,
    LeaseLost,
    SessionLimitReached,
    SessionNotFound,
    StorageUnavailable,
    StoreClosed,
    StoreError,
    Unstorable,
)

# Seconds a client is told to wait before retrying while the storage is unavailable.
STORAGE_RETRY_AFTER: Final = 5
# ...and while another replica's hold on the session changes hands.
SESSION_ELSEWHERE_RETRY_AFTER: Final = 1
# The refusals worth retrying, by code, and after how many seconds: one table for
# API errors and refused acks alike, so every path to a code says the same.
RETRY_AFTER_BY_CODE: Final = {
    "storage_unavailable": STORAGE_RETRY_AFTER,
    "shutting_down": STORAGE_RETRY_AFTER,
    "session_elsewhere": SESSION_ELSEWHERE_RETRY_AFTER,
}


class ServerError(AgentRuntimeError):
    """Base of errors raised by the server package."""


class ConfigurationError(ServerError):
    """The configuration is invalid, or unsafe to serve with (e.g. no tokens off loopback)."""


class ApiError(ServerError):
    """A client error with an HTTP status and a machine-readable ``code``.

    Rendered as ``{"error": {"code": ..., "message": ...}}`` (plus
    ``"retryable": true`` and a ``Retry-After`` header when retrying later can
    succeed); on WebSocket as an ``error`` frame with the same code.
    """

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.retry_after is not None

    def to_json(self) -> JSONObject:
        error: JSONObject = {"code": self.code, "message": self.message}
        if self.retryable:
            error["retryable"] = True
        return {"error": error}


def bad_request(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


def command_error(error: CommandError) -> ApiError:
    """A refused session change (create, update, fork, delete): 400, or 503 to retry
    when the replica running the session did not answer in time."""
    if error.code == "session_elsewhere":
        return ApiError(503, error.code, str(error), retry_after=SESSION_ELSEWHERE_RETRY_AFTER)
    return bad_request(error.code, str(error))


def unauthorized(message: str = "missing or invalid bearer token") -> ApiError:
    return ApiError(401, "unauthorized", message)


def not_found(what: str = "session") -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"message exceeds the limit of {limit} bytes")


def rate_limited(message: str) -> ApiError:
    return ApiError(429, "rate_limited", message)


def store_error(error: StoreError) -> ApiError:
    """The one translation of store failures into API errors."""
    match error:
        case StorageUnavailable():
            return ApiError(
                503,
                "storage_unavailable",
                f"the session store cannot write right now; retry later ({error})",
                retry_after=STORAGE_RETRY_AFTER,
            )
        case SessionLimitReached():
            return ApiError(
                429, "too_many_sessions", f"at most {error.limit} live sessions per principal"
            )
        case Unstorable():
            return ApiError(400, "unstorable", str(error))
        case StoreClosed():
            return ApiError(
                503,
                "shutting_down",
                "the server is shutting down; retry after it restarts",
                retry_after=STORAGE_RETRY_AFTER,
            )
        case SessionNotFound():
            return not_found()
        case LeaseHeld() | LeaseLost():
            # Changes are forwarded to the replica running the session; this is
            # what is left when it moved on again meanwhile.
            return ApiError(
                503,
                "session_elsewhere",
                "another replica runs this session right now; retry",
                retry_after=SESSION_ELSEWHERE_RETRY_AFTER,
            )
        case _:
            return ApiError(500, "internal", "internal server error")
