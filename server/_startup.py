"""What ``agent-runtime`` tells its user as it starts, or when it cannot start.

- :func:`banner`: printed once the socket listens: the URL, the database, the
  model provider (with its URL, model and timeouts) and, for a generated token,
  ready-to-paste commands;
- :func:`bind_error`: the ``OSError`` of binding as a sentence with the fix;
- :func:`describe_failure`: the one-line message for an error raised at start-up
  (or ``None`` for a bug, which keeps its traceback; trio's exception groups
  are looked into with :func:`sessions.single_error`).
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import socket
import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from sessions import AgentRuntimeError, is_postgres_dsn

from ._config import API_KEY_ENV, ServeConfig
from ._errors import ConfigurationError

PROGRAM = "agent-runtime"
DISTRIBUTION = "agent-runtime"


def version() -> str:
    """The installed distribution's version (``unknown`` when run from a bare checkout)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def command_name() -> str:
    """How to run ``agent-runtime`` from another terminal, ready to paste.

    The bare name when it is on ``PATH`` (an activated virtual environment);
    otherwise the absolute path of the script that is running, since the README's
    first command runs ``.venv/bin/agent-runtime`` without activating anything.
    """
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is None or script.name != PROGRAM:
        # ``python -m server``: the console script sits beside the interpreter, if installed.
        script = Path(sys.executable).parent / PROGRAM
        if not script.is_file():
            return f"{shlex.quote(sys.executable)} -m server"
    on_path = shutil.which(PROGRAM)
    if on_path is not None and _same_file(on_path, script):
        return PROGRAM
    return shlex.quote(str(script.absolute()))


def redact_dsn(dsn: str) -> str:
    """*dsn* without its password (a DSN is shown in logs and the startup banner)."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=f"{user}{host}{port}"))


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def database_line(config: ServeConfig) -> str:
    if config.in_memory:
        return "database: in memory (sessions are lost when the server stops)"
    if is_postgres_dsn(config.db):
        return f"database: PostgreSQL {redact_dsn(config.db)}"
    return f"database: {os.path.abspath(config.db)}"


def model_line(config: ServeConfig) -> str:
    if config.llm == "scripted":
        return (
            "model: scripted (offline demo); for a real LLM pass --llm openai --llm-url URL "
            f"--model NAME (API key in {API_KEY_ENV})"
        )
    retries = "retry" if config.llm_retries == 1 else "retries"
    return (
        f"model: openai, {config.model_name} at {config.llm_url} "
        f"(timeouts: connect {config.llm_connect_timeout:g}s, "
        f"first token {config.llm_first_token_timeout:g}s, "
        f"idle {config.llm_idle_timeout:g}s; {config.llm_retries} {retries})"
    )


def missing_key_warning(config: ServeConfig) -> str | None:
    """The warning for an ``openai`` provider without an API key, else ``None``."""
    if config.llm != "openai" or config.api_key:
        return None
    return (
        f"{API_KEY_ENV} is not set: requests to {config.llm_url} carry no API key "
        "(fine for a local server such as Ollama or vLLM; a hosted API will refuse them)"
    )


def banner(config: ServeConfig, url: str, token: str | None) -> list[str]:
    """The lines printed once *url* listens (*token*: the generated one, if any)."""
    lines = [f"listening on {url}", database_line(config), model_line(config)]
    lines.append(f"web console: open {url}/ (sign in with a token)")
    if token is not None:
        lines += [
            "no tokens configured; generated one for this run. Try:",
            f"  curl -sS -H 'Authorization: Bearer {token}' {url}/v1/sessions",
            f"  {command_name()} chat --url {url} --token {token}",
        ]
    return lines


def bind_error(host: str, port: int, error: OSError) -> ConfigurationError:
    """*error* from binding ``host:port`` as a refusal that says what to do."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    reason = error.strerror or str(error)
    if isinstance(error, socket.gaierror):
        fix = "--host must be an address or name of this machine, such as 127.0.0.1"
    elif error.errno == errno.EADDRINUSE:
        fix = "another process uses that port; stop it, or pass --port (0 picks a free one)"
    elif error.errno == errno.EACCES:
        fix = "ports below 1024 need privileges; pass --port with a higher one"
    elif error.errno == errno.EADDRNOTAVAIL:
        fix = "--host must be an address of this machine, such as 127.0.0.1"
    else:
        fix = "check --host and --port"
    return ConfigurationError(f"cannot listen on {where}: {reason}; {fix}")


def describe_failure(error: BaseException) -> str | None:
    """The user-facing sentence for *error*, or ``None`` if it is a bug.

    Errors of our own tree carry a complete message. An ``OSError`` that reaches
    this far comes from the environment (a file, the network), not from the user's
    input, so it is reported plainly as well.
    """
    if isinstance(error, AgentRuntimeError):
        return str(error)
    if isinstance(error, OSError):
        reason = error.strerror or str(error)
        return f"{reason}: {error.filename}" if error.filename else reason
    return None
