"""Logging set-up: text or one JSON object per line, and a redacting access log.

Secrets never reach a log line: query values of ``access_token`` / ``token`` are
replaced by ``REDACTED`` and request headers (``Authorization``) are not logged.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl, urlencode

from hypercorn.logging import Logger as HypercornLogger

if TYPE_CHECKING:
    from hypercorn.typing import ResponseSummary, WWWScope

from ._config import LogFormat

ACCESS_LOGGER = "agent_runtime.access"
SECRET_QUERY_KEYS: Final = frozenset({"access_token", "token"})
REDACTED: Final = "REDACTED"

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is data.
_STANDARD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``message`` and extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Classic text lines; extras are appended as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _STANDARD_ATTRS and not key.startswith("_")
        ]
        return f"{line} {' '.join(extras)}" if extras else line


def configure_logging(fmt: LogFormat, level: int = logging.INFO) -> None:
    """Route every logger (ours, hypercorn's, quart's) to stderr in format *fmt*."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # httpx's clients log every request at INFO (the MCP SDK's HTTP transport,
    # the console's and chat's own calls): a line per call that the metrics
    # already count. Their warnings, and everything at DEBUG, still come through.
    quiet = level if level <= logging.DEBUG else max(level, logging.WARNING)
    logging.getLogger("httpx").setLevel(quiet)


def redact_query(query: str) -> str:
    """*query* with the values of secret parameters replaced by ``REDACTED``."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode(
        [(key, REDACTED if key.lower() in SECRET_QUERY_KEYS else value) for key, value in pairs]
    )


class AccessLogger(HypercornLogger):
    """Hypercorn's logger with a structured, redacted access record.

    Each request becomes one record on ``agent_runtime.access`` with ``method``,
    ``path``, ``query`` (redacted), ``status``, ``duration_ms`` and ``client`` as
    fields; headers are never logged.
    """

    async def access(
        self, request: WWWScope, response: ResponseSummary | None, request_time: float
    ) -> None:
        logger = logging.getLogger(ACCESS_LOGGER)
        # No response: the client went away first (e.g. a closed SSE stream).
        level = logging.INFO if response is not None else logging.DEBUG
        if not logger.isEnabledFor(level):
            return
        query = redact_query(request["query_string"].decode("latin-1"))
        method = request["method"] if request["type"] == "http" else "WS"
        status = response["status"] if response is not None else None
        client = request.get("client")
        path = request["path"] + (f"?{query}" if query else "")
        logger.log(
            level,
            "%s %s %s",
            method,
            path,
            status if status is not None else "-",
            extra={
                "method": method,
                "path": request["path"],
                "query": query,
                "status": status,
                "duration_ms": round(request_time * 1000, 3),
                "client": f"{client[0]}:{client[1]}" if client else None,
            },
        )
