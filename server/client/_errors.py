"""What the client library raises: :class:`ClientError`, and :class:`CommandError` for a command."""

from __future__ import annotations

import httpx


class ClientError(Exception):
    """A failure reconnecting cannot fix: the token or session was refused, the server
    is not an agent-runtime, or it stayed unreachable for every attempt.

    Attributes:
        code: machine-readable: the server's error code (``unauthorized``,
            ``not_found``, ``invalid_request``…) or one of the library's own:
            ``unavailable`` (gave up reconnecting), ``gap`` (the event log kept
            skipping a seq), ``bad_response`` (not the protocol), ``protocol_error``
            (the server closed with 1008).
        message: what went wrong, in words.
        status: the HTTP status it came with, if any.
    """

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class CommandError(ClientError):
    """The server could not treat a command as one: it answered with an ``error``
    frame (``too_large``, ``bad_json``, ``too_deep``, ``invalid_text``…) instead of
    an ack. Resending the same frame cannot help.
    """

    def __init__(self, code: str, message: str, command_id: str) -> None:
        super().__init__(code, message)
        self.command_id = command_id


class ServerBusy(httpx.TransportError):
    """The server answered 5xx or 429: it is there, but waiting (and retrying) may help.

    A transport error, so whatever retries those retries this too.
    """


def describe_error(error: BaseException) -> str:
    """*error* in words, with its cause unless that says nothing new.

    (httpx wraps an ``OSError`` whose text it repeats; saying it twice helps nobody.)
    """
    text = str(error)
    cause = error.__cause__ or error.__context__
    if not text:
        # Wrappers often say nothing (httpx's ConnectError over httpcore's over trio's
        # BrokenResourceError over the ssl.SSLError that does): the first that speaks.
        for _ in range(8):  # a chain is short; a cycle must not hang us
            if cause is None or str(cause):
                break
            cause = cause.__cause__ or cause.__context__
        return str(cause) if cause is not None and str(cause) else type(error).__name__
    reason = str(cause) if cause is not None else ""
    if reason and reason not in text and text not in reason:
        return f"{text} ({reason})"
    return text if len(text) >= len(reason) else reason
