"""The setting table: each serve setting's TOML location, flag, variable and converter.

A setting has one canonical name (a :class:`~server._config.ServeConfig` field,
or one of its :class:`~server._config.Limits`). This module says where each is
written in the file (:data:`TOML_KEYS`), which flag (:func:`flag_name`) and
which ``AGENT_RUNTIME_*`` variable (:func:`read_env`) give it, and how a raw value
from any of them is checked and converted (:data:`CONVERTERS`). It is separate
from ``_config.py`` (the value and the merge) and ``_config_file.py`` (the TOML
file's tables) because both read it, and because the converters are a family
of small parsers of their own.
"""

from __future__ import annotations

import math
import os
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from agents.model import PROVIDERS

from ._errors import ConfigurationError

MEMORY_DB = ":memory:"
ENV_PREFIX = "AGENT_RUNTIME_"
API_KEY_ENV = "AGENT_RUNTIME_LLM_API_KEY"

# Canonical setting name → (TOML section, key in section).
TOML_KEYS: dict[str, tuple[str, str]] = {
    "host": ("server", "host"),
    "port": ("server", "port"),
    "db": ("server", "db"),
    "durability": ("server", "durability"),
    "log_format": ("server", "log_format"),
    "heartbeat_interval": ("server", "heartbeat_interval"),
    "lease_ttl": ("server", "lease_ttl"),
    "cors_origins": ("server", "cors_origins"),
    "send_timeout": ("server", "send_timeout"),
    "llm": ("llm", "provider"),
    "llm_url": ("llm", "url"),
    "model": ("llm", "model"),
    "scripted_pace": ("llm", "pace"),
    "llm_connect_timeout": ("llm", "connect_timeout"),
    "llm_first_token_timeout": ("llm", "first_token_timeout"),
    "llm_idle_timeout": ("llm", "idle_timeout"),
    "llm_retries": ("llm", "retries"),
    "llm_max_connections": ("llm", "max_connections"),
    "llm_max_keepalive": ("llm", "max_keepalive"),
    "modes": ("agents", "modes"),
    "policy": ("agents", "policy"),
    "max_steps": ("agents", "max_steps"),
    "max_subtask_depth": ("agents", "max_subtask_depth"),
    "approval_timeout": ("agents", "approval_timeout"),
    "shutdown_grace": ("agents", "shutdown_grace"),
    "session_idle_ttl": ("agents", "session_idle_ttl"),
    "max_idle_sessions": ("agents", "max_idle_sessions"),
    "tokens": ("auth", "tokens"),
    "max_message_bytes": ("limits", "max_message_bytes"),
    "commands_per_second": ("limits", "commands_per_second"),
    "sessions_per_principal": ("limits", "sessions_per_principal"),
    "compact_at": ("context", "compact_at"),
    "keep_user_messages": ("context", "keep_user_messages"),
    "compaction_model": ("context", "compaction_model"),
    "tool_result_share": ("context", "tool_result_share"),
}
# Flags spelled other than ``--`` + the setting name with dashes.
_FLAG_SPELLING = {"scripted_pace": "--pace"}

_T = TypeVar("_T")


def _choice(options: tuple[_T, ...]) -> Callable[[str, object], _T]:
    def convert(name: str, value: object) -> _T:
        for option in options:
            if value == option:
                return option
        allowed = ", ".join(repr(o) for o in options)
        raise ConfigurationError(f"{name}: expected one of {allowed}, got {value!r}")

    return convert


def _string(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{name}: expected a non-empty string, got {value!r}")
    return value


def _integer(name: str, value: object) -> int:
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise ConfigurationError(f"{name}: expected an integer, got {value!r}") from None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"{name}: expected a non-negative integer, got {value!r}")
    return value


def _positive_integer(name: str, value: object) -> int:
    number = _integer(name, value)
    if number < 1:
        raise ConfigurationError(f"{name}: expected a positive integer, got {value!r}")
    return number


def _number(name: str, value: object) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigurationError(f"{name}: expected a number, got {value!r}") from None
    # "nan" and "inf" parse as floats, but no setting means them.
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(f"{name}: expected a non-negative number, got {value!r}")
    return float(value)


def _seconds(name: str, value: object) -> float:
    try:
        seconds = _number(name, value)
    except ConfigurationError:
        seconds = 0.0  # refused below, with the wording this setting needs
    if seconds <= 0:
        raise ConfigurationError(f"{name}: expected a positive number of seconds, got {value!r}")
    return seconds


def _share(name: str, value: object) -> float:
    """A fraction in (0, 1]."""
    try:
        share = _number(name, value)
    except ConfigurationError:
        share = 0.0  # refused below, with the wording this setting needs
    if not 0 < share <= 1:
        raise ConfigurationError(f"{name}: expected a number above 0 and at most 1, got {value!r}")
    return share


def _open_share(name: str, value: object) -> float:
    """A fraction in (0, 1)."""
    try:
        share = _number(name, value)
    except ConfigurationError:
        share = 0.0
    if not 0 < share < 1:
        raise ConfigurationError(f"{name}: expected a number between 0 and 1, got {value!r}")
    return share


def _path(name: str, value: object) -> Path:
    # Flags arrive as Path already; files and the environment give strings.
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return Path(_string(name, value))


def parse_tokens(text: str) -> dict[str, str]:
    """``"token1:alice,token2:bob"`` → ``{"token1": "alice", "token2": "bob"}``.

    Raises:
        ConfigurationError: an entry is not ``token:principal`` (the token is not echoed).
    """
    tokens: dict[str, str] = {}
    for index, entry in enumerate(part.strip() for part in text.split(",")):
        if not entry:
            continue
        token, sep, principal = entry.partition(":")
        if not sep or not token.strip() or not principal.strip():
            raise ConfigurationError(
                f"{ENV_PREFIX}TOKENS entry {index + 1} must look like token:principal"
            )
        tokens[token.strip()] = principal.strip()
    return tokens


def _tokens(name: str, value: object) -> dict[str, str]:
    if isinstance(value, str):
        return parse_tokens(value)
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for token, principal in value.items():
            if not isinstance(token, str) or not token or not isinstance(principal, str):
                raise ConfigurationError(f"{name}: expected a table of token = principal strings")
            out[token] = principal
        return out
    raise ConfigurationError(f"{name}: expected a table of token = principal strings")


def parse_origin(text: str) -> str:
    """*text* as a browser sends it in ``Origin``: ``scheme://host[:port]``, no path.

    Raises:
        ValueError: not an http(s) origin, or it has a path, query or credentials.
    """
    parsed = urllib.parse.urlsplit(text.strip())
    if (
        parsed.scheme not in ("http", "https")
        or not parsed.hostname
        or parsed.path not in ("", "/")
        or parsed.query
        or parsed.fragment
        or parsed.username is not None
    ):
        raise ValueError(f"{text!r} is not an origin like https://console.example:8443")
    default = {"http": 80, "https": 443}[parsed.scheme]
    # Browsers leave the scheme's default port out of Origin: so must we.
    port = f":{parsed.port}" if parsed.port not in (None, default) else ""
    return f"{parsed.scheme}://{parsed.hostname}{port}"


def _origins(name: str, value: object) -> tuple[str, ...]:
    """Comma-separated (flag, environment) or an array (file) of origins; ``*`` for any."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigurationError(f"{name}: expected origins such as https://console.example")
    origins: list[str] = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        if item == "*":
            origins.append(item)
            continue
        try:
            origins.append(parse_origin(item))
        except ValueError as error:
            raise ConfigurationError(f"{name}: {error}") from None
    return tuple(origins)


CONVERTERS: dict[str, Callable[[str, object], object]] = {
    "host": _string,
    "port": _integer,
    "db": _string,
    "durability": _choice(("normal", "full")),
    "llm": _choice(tuple(PROVIDERS)),
    "llm_url": _string,
    "model": _string,
    "api_key": _string,
    "modes": _path,
    "policy": _path,
    "log_format": _choice(("text", "json")),
    "tokens": _tokens,
    "max_message_bytes": _integer,
    "commands_per_second": _number,
    "sessions_per_principal": _integer,
    "heartbeat_interval": _number,
    "lease_ttl": _number,
    "cors_origins": _origins,
    "send_timeout": _seconds,
    "scripted_pace": _number,
    "llm_connect_timeout": _seconds,
    "llm_first_token_timeout": _seconds,
    "llm_idle_timeout": _seconds,
    "llm_retries": _integer,
    "llm_max_connections": _positive_integer,
    "llm_max_keepalive": _integer,
    "max_steps": _integer,
    "max_subtask_depth": _positive_integer,
    "approval_timeout": _number,
    "shutdown_grace": _number,
    "session_idle_ttl": _seconds,
    "max_idle_sessions": _integer,
    "compact_at": _share,
    "keep_user_messages": _integer,
    "compaction_model": _string,
    "tool_result_share": _open_share,
}


def read_env(env: Mapping[str, str]) -> dict[str, object]:
    """The ``AGENT_RUNTIME_*`` settings of *env*, keyed by canonical name."""
    settings: dict[str, object] = {}
    for name in CONVERTERS:
        value = env.get(ENV_PREFIX + name.upper())
        if value is not None and value != "":
            settings[name] = value
    return settings


def flag_name(name: str) -> str:
    """The command-line flag of setting *name* (``llm_retries`` → ``--llm-retries``)."""
    return _FLAG_SPELLING.get(name, "--" + name.replace("_", "-"))
