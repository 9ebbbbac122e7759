"""Serve configuration: one frozen value built from flags, environment, a TOML file and defaults.

Precedence, per setting: CLI flag > environment (``AGENT_RUNTIME_*``) > TOML file
(``--config``) > default. The LLM API key is read from
``AGENT_RUNTIME_LLM_API_KEY`` only, so it never sits in a file or a process list.

TOML layout (every key optional)::

    [server]  host, port, db, durability, log_format, heartbeat_interval, send_timeout,
              lease_ttl, cors_origins
    [llm]     provider ("scripted" | "openai"), url, model, pace,
              connect_timeout, first_token_timeout, idle_timeout, retries,
              max_connections, max_keepalive
    [agents]  modes, policy, max_steps, approval_timeout, shutdown_grace,
              session_idle_ttl, max_idle_sessions
    [auth]    tokens = { "<token>" = "<principal>" }
    [limits]  max_message_bytes, commands_per_second, sessions_per_principal
    [context] compact_at, keep_user_messages, compaction_model, tool_result_share
    [models."<model name>"]   context_window, max_output_tokens,
              input_price, output_price, cached_input_price
    [mcp.servers.<name>]      command, args, env, cwd | url, headers, headers_env;
              trusted, tools, timeout_s, startup (see agents/_core/_mcp.py)

Each ``[models."<name>"]`` table gives one model's window and prices (US dollars per
million tokens); ``[models.default]`` is for models no table names. A key a table
leaves out keeps its built-in value: ``scripted``'s for ``[models.scripted]``, else
a 128000 window, a 4096 output reserve and no price (tables do not inherit from
``[models.default]``). ``[models]`` tables exist only in the file, not as flags or
variables; the ``[context]`` keys are also variables (``AGENT_RUNTIME_COMPACT_AT``, ...).
``[mcp.servers.<name>]`` tables (MCP servers whose tools modes can select with
``mcp = [...]``) are also only in the file; a relative ``cwd`` is the file's.

Relative paths in the file are resolved against the file's directory. An invalid
value is refused with a message naming where it came from: the flag
(``--llm-retries``), the variable (``AGENT_RUNTIME_LLM_RETRIES``) or the file and
key (``agent.toml: [llm] retries``).
"""

from __future__ import annotations

import math
import os
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeAlias, TypeVar

import platformdirs
from attrs import evolve, field, frozen

from agents import ConfigError
from agents._core._budget import ModelCatalog, ModelLimits
from agents.mcp import McpServerConfig, StdioTransport, parse_servers
from agents.model import PROVIDERS
from sessions import is_postgres_dsn

from ._errors import ConfigurationError

Durability: TypeAlias = Literal["normal", "full"]
# A key of agents.model.PROVIDERS (validated against it, so a new provider needs no edit here).
Provider: TypeAlias = str
LogFormat: TypeAlias = Literal["text", "json"]

MEMORY_DB = ":memory:"
ENV_PREFIX = "AGENT_RUNTIME_"
API_KEY_ENV = "AGENT_RUNTIME_LLM_API_KEY"


def default_db_path() -> str:
    """``sessions.db`` under the platform's user data directory for ``agent-runtime``."""
    return str(Path(platformdirs.user_data_dir("agent-runtime")) / "sessions.db")


@frozen
class Limits:
    """Per-request and per-principal limits (each violation gets a clear error).

    Attributes:
        max_message_bytes: largest HTTP body or WebSocket message accepted.
        commands_per_second: sustained command rate per connection (burst: 2 s worth).
        sessions_per_principal: live sessions one principal may own.
    """

    max_message_bytes: int = 1024 * 1024
    commands_per_second: float = 20.0
    sessions_per_principal: int = 1000


@frozen
class ServeConfig:
    """Everything ``serve()`` needs; secrets are kept out of ``repr``.

    ``tokens`` maps bearer token → principal. ``db`` is a path or ``":memory:"``.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    db: str = field(factory=default_db_path)
    durability: Durability = "normal"
    llm: Provider = "scripted"
    llm_url: str = "https://api.openai.com/v1"
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    modes: Path | None = None
    policy: Path | None = None
    log_format: LogFormat = "text"
    tokens: Mapping[str, str] = field(factory=dict, repr=False)
    limits: Limits = field(factory=Limits)
    heartbeat_interval: float = 15.0
    # PostgreSQL with several replicas: how long a session's lease lives without
    # renewal (how soon a dead replica's sessions can be taken over).
    lease_ttl: float = 5.0
    # Origins whose pages may call the API from a browser (CORS); when set,
    # WebSocket upgrades from other browser origins are refused. None by default.
    cors_origins: tuple[str, ...] = ()
    # A connection whose peer accepts no byte for this long is cut (two heartbeats).
    send_timeout: float = 30.0
    scripted_pace: float = 0.02
    # The openai provider's patience (seconds) and retries before the first token.
    llm_connect_timeout: float = 10.0
    llm_first_token_timeout: float = 60.0
    llm_idle_timeout: float = 60.0
    llm_retries: int = 3
    # The openai provider's connection pool (finished streams return their
    # connection to it, so one connection serves many calls).
    llm_max_connections: int = 100
    llm_max_keepalive: int = 20
    max_steps: int = 25
    approval_timeout: float = 600.0
    shutdown_grace: float = 5.0
    # Live sessions with no work are dropped from memory after this many seconds
    # idle, or beyond this many idle ones, and reloaded from the store on demand.
    session_idle_ttl: float = 60.0
    max_idle_sessions: int = 1000
    hello_timeout: float = 10.0
    subscriber_buffer: int = 1024
    send_buffer: int = 256
    # Context budgets: each model's window and prices, and how full a request may get.
    models: ModelCatalog = field(factory=ModelCatalog)
    compact_at: float = 0.8
    keep_user_messages: int = 2
    compaction_model: str | None = None
    tool_result_share: float = 0.25
    # MCP servers (only from the file's [mcp.servers.<name>] tables).
    mcp_servers: tuple[McpServerConfig, ...] = ()

    @property
    def in_memory(self) -> bool:
        return self.db == MEMORY_DB

    @property
    def model_name(self) -> str:
        """The model to request: ``model`` or the provider's default."""
        if self.model is not None:
            return self.model
        return "scripted" if self.llm == "scripted" else "gpt-4o-mini"


# Canonical setting name → (TOML section, key in section).
_TOML_KEYS: dict[str, tuple[str, str]] = {
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
# The [models."<name>"] tables: read by _model_catalog, not by name/converter.
_MODELS_SECTION = "models"
_MCP_SECTION = "mcp"  # [mcp.servers.<name>]: read by _mcp_servers
_DEFAULT_MODEL_TABLE = "default"
_MODEL_KEYS = (
    "context_window",
    "max_output_tokens",
    "input_price",
    "output_price",
    "cached_input_price",
)
_PATH_KEYS = frozenset({"db", "modes", "policy"})
_LIMIT_KEYS = frozenset({"max_message_bytes", "commands_per_second", "sessions_per_principal"})
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


_CONVERTERS: dict[str, Callable[[str, object], object]] = {
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
    "approval_timeout": _number,
    "shutdown_grace": _number,
    "session_idle_ttl": _seconds,
    "max_idle_sessions": _integer,
    "compact_at": _share,
    "keep_user_messages": _integer,
    "compaction_model": _string,
    "tool_result_share": _open_share,
}


def _model_table_label(path: Path, model: str) -> str:
    if model == _DEFAULT_MODEL_TABLE:
        return f"{path}: [models.default]"
    quoted = model.replace("\\", "\\\\").replace('"', '\\"')
    return f'{path}: [models."{quoted}"]'


def _model_number(where: str, key: str, value: object) -> int | float:
    """A TOML value of a models table: an integer or a price, never a string or a bool."""
    if key in ("context_window", "max_output_tokens"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigurationError(f"{where} {key}: expected a positive integer, got {value!r}")
        return value
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(
            f"{where} {key}: expected a non-negative number (US dollars per million "
            f"tokens), got {value!r}"
        )
    return float(value)


def _model_catalog(path: Path, tables: dict[str, Any]) -> ModelCatalog:
    """The catalogue of the ``[models."<name>"]`` tables of file *path*.

    Raises:
        ConfigurationError: a value that is not a table, an unknown key, a wrong
            type, or limits :class:`ModelLimits` refuses; the message names the table.
    """
    builtin = ModelCatalog()
    models = dict(builtin.models)
    default = builtin.default
    for model, table in tables.items():
        where = _model_table_label(path, model)
        if not isinstance(table, dict):
            raise ConfigurationError(
                f"{path}: [models] {model} = {table!r}: each model is a table, "
                f'[models."<name>"] with {", ".join(_MODEL_KEYS)}'
            )
        # Any: _model_number gives each key the type its ModelLimits field declares.
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key not in _MODEL_KEYS:
                known = ", ".join(_MODEL_KEYS)
                raise ConfigurationError(f"{where}: unknown key {key}; a model has {known}")
            values[key] = _model_number(where, key, value)
        is_default = model == _DEFAULT_MODEL_TABLE
        base = default if is_default else models.get(model, ModelLimits())
        try:
            limits = evolve(base, **values)
        except ValueError as error:
            raise ConfigurationError(f"{where} {error}") from None
        if is_default:
            default = limits
        else:
            models[model] = limits
    return ModelCatalog(models=models, default=default)


def read_toml(path: Path) -> dict[str, object]:
    """The settings of TOML file *path*, keyed by canonical name.

    Raises:
        ConfigurationError: unreadable file, invalid TOML, unknown section or key,
            or an API key in the file.
    """
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ConfigurationError(f"cannot read config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"config file {path} is not valid TOML: {error}") from None
    by_location = {location: name for name, location in _TOML_KEYS.items()}
    settings: dict[str, object] = {}
    for section, table in document.items():
        if not isinstance(table, dict):
            raise ConfigurationError(f"{path}: top-level key {section!r} must be a [section]")
        if section == _MODELS_SECTION:
            settings["models"] = _model_catalog(path, table)
            continue
        if section == _MCP_SECTION:
            settings["mcp_servers"] = _mcp_servers(path, document)
            continue
        for key, value in table.items():
            if (section, key) == ("llm", "api_key"):
                raise ConfigurationError(
                    f"{path}: do not put API keys in config files; set {API_KEY_ENV}"
                )
            name = by_location.get((section, key))
            if name is None:
                hint = _known_keys(section)
                raise ConfigurationError(f"{path}: unknown setting [{section}] {key}; {hint}")
            if (
                name in _PATH_KEYS
                and isinstance(value, str)
                and value != MEMORY_DB
                and not is_postgres_dsn(value)
            ):
                value = str(path.parent / Path(value).expanduser())
            settings[name] = value
    return settings


def _mcp_servers(path: Path, document: dict[str, Any]) -> tuple[McpServerConfig, ...]:
    try:
        servers = parse_servers(document, source=str(path))
    except ConfigError as error:
        raise ConfigurationError(str(error)) from None
    return tuple(_with_cwd_of(path, server) for server in servers)


def _with_cwd_of(path: Path, server: McpServerConfig) -> McpServerConfig:
    """*server* with a relative ``cwd`` taken as the config file's directory's."""
    transport = server.transport
    if not isinstance(transport, StdioTransport) or transport.cwd is None:
        return server
    cwd = Path(transport.cwd).expanduser()
    return evolve(server, transport=evolve(transport, cwd=str(path.parent / cwd)))


def _known_keys(section: str) -> str:
    known = [key for where, key in _TOML_KEYS.values() if where == section]
    if known:
        return f"[{section}] has {', '.join(known)}"
    sections = {where for where, _ in _TOML_KEYS.values()} | {_MODELS_SECTION}
    return "sections: " + ", ".join(sorted(sections))


def read_env(env: Mapping[str, str]) -> dict[str, object]:
    """The ``AGENT_RUNTIME_*`` settings of *env*, keyed by canonical name."""
    settings: dict[str, object] = {}
    for name in _CONVERTERS:
        value = env.get(ENV_PREFIX + name.upper())
        if value is not None and value != "":
            settings[name] = value
    return settings


def load_config(
    *,
    flags: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> ServeConfig:
    """Merge the sources by precedence and validate every value.

    *flags* holds CLI values by canonical name (``None`` meaning "not given").
    The config file is *config_file*, else ``AGENT_RUNTIME_CONFIG`` from *env*.

    Raises:
        ConfigurationError: a value is invalid; the message names the setting.
    """
    env = env if env is not None else {}
    if config_file is None and env.get(ENV_PREFIX + "CONFIG"):
        config_file = Path(env[ENV_PREFIX + "CONFIG"])
    merged: dict[str, object] = {}
    # Where each merged value came from, so an error names what the user wrote.
    origin: dict[str, str] = {}
    if config_file is not None:
        from_file = read_toml(config_file)
        merged.update(from_file)
        origin.update(
            {name: _file_label(config_file, name) for name in from_file if name in _TOML_KEYS}
        )
    from_env = read_env(env)
    merged.update(from_env)
    origin.update({name: ENV_PREFIX + name.upper() for name in from_env})
    merged.pop("api_key", None)
    if env.get(API_KEY_ENV):
        merged["api_key"] = env[API_KEY_ENV]
    from_flags = {k: v for k, v in (flags or {}).items() if v is not None}
    merged.update(from_flags)
    origin.update({name: flag_name(name) for name in from_flags})

    # Any: each converter returns the exact type its field declares.
    values: dict[str, Any] = {}
    # Only the file has [models] tables, and read_toml has already checked them.
    catalog = merged.pop("models", None)
    if catalog is not None:
        if not isinstance(catalog, ModelCatalog):
            raise ConfigurationError(f"models: expected a ModelCatalog, got {catalog!r}")
        values["models"] = catalog
    servers = merged.pop("mcp_servers", None)
    if isinstance(servers, tuple):
        values["mcp_servers"] = servers
    for name, raw in merged.items():
        convert = _CONVERTERS.get(name)
        if convert is None:
            raise ConfigurationError(f"unknown setting {name!r}")
        values[name] = convert(origin.get(name, name), raw)
    limits = {k: values.pop(k) for k in list(values) if k in _LIMIT_KEYS}
    config = ServeConfig()
    config = evolve(config, limits=evolve(config.limits, **limits), **values)
    if config.port > 65535:
        raise ConfigurationError(f"{origin['port']}: expected 0..65535, got {config.port}")
    if config.limits.max_message_bytes < 1024:
        where = origin["max_message_bytes"]
        raise ConfigurationError(f"{where}: expected at least 1024")
    if config.lease_ttl <= 0:
        where = origin["lease_ttl"]
        raise ConfigurationError(f"{where}: lease_ttl must be a positive number of seconds")
    if config.heartbeat_interval <= 0:
        where = origin["heartbeat_interval"]
        raise ConfigurationError(f"{where}: expected a positive number")
    return config


def flag_name(name: str) -> str:
    """The command-line flag of setting *name* (``llm_retries`` → ``--llm-retries``)."""
    return _FLAG_SPELLING.get(name, "--" + name.replace("_", "-"))


def _file_label(path: Path, name: str) -> str:
    section, key = _TOML_KEYS[name]
    return f"{path}: [{section}] {key}"
