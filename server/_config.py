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
    [agents]  modes, policy, max_steps, max_subtask_depth, approval_timeout,
              shutdown_grace, session_idle_ttl, max_idle_sessions
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

This module holds the value (:class:`ServeConfig`) and the merge
(:func:`load_config`); the setting table and its converters are in
``_config_settings.py``, the TOML file's reading in ``_config_file.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeAlias

import platformdirs
from attrs import evolve, field, frozen

from agents._core._budget import ModelCatalog
from agents.mcp import McpServerConfig

# Re-exported (``X as X``): these were defined here before they moved out.
from ._config_file import read_toml as read_toml
from ._config_settings import API_KEY_ENV as API_KEY_ENV
from ._config_settings import CONVERTERS, TOML_KEYS
from ._config_settings import ENV_PREFIX as ENV_PREFIX
from ._config_settings import MEMORY_DB as MEMORY_DB
from ._config_settings import flag_name as flag_name
from ._config_settings import parse_origin as parse_origin
from ._config_settings import parse_tokens as parse_tokens
from ._config_settings import read_env as read_env
from ._errors import ConfigurationError

Durability: TypeAlias = Literal["normal", "full"]
# A key of agents.model.PROVIDERS (validated against it, so a new provider needs no edit here).
Provider: TypeAlias = str
LogFormat: TypeAlias = Literal["text", "json"]


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
    llm_max_keepalive: int = 100
    max_steps: int = 25
    max_subtask_depth: int = 4
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


_LIMIT_KEYS = frozenset({"max_message_bytes", "commands_per_second", "sessions_per_principal"})


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
    from_file: dict[str, object] = {}
    if config_file is not None:
        from_file = read_toml(config_file)
        merged.update(from_file)
        origin.update(
            {name: _file_label(config_file, name) for name in from_file if name in TOML_KEYS}
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
    # A value that a later source overrides is checked too: a broken file or
    # variable must not go unnoticed until the flag that hides it is dropped.
    overridden = [
        (ENV_PREFIX + name.upper(), name, raw)
        for name, raw in from_env.items()
        if name in from_flags
    ]
    if config_file is not None:
        overridden += [
            (_file_label(config_file, name), name, raw)
            for name, raw in from_file.items()
            if name in TOML_KEYS and (name in from_env or name in from_flags)
        ]
    for where, name, raw in overridden:
        convert = CONVERTERS.get(name)
        if convert is not None:
            convert(where, raw)

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
        convert = CONVERTERS.get(name)
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


def _file_label(path: Path, name: str) -> str:
    section, key = TOML_KEYS[name]
    return f"{path}: [{section}] {key}"
