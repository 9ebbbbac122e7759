"""Reading the TOML configuration file: its sections, ``[models]`` and ``[mcp.servers]``.

:func:`read_toml` turns a file into settings keyed by canonical name (the
table of ``_config_settings.py`` says where each lives), resolving relative
paths against the file's directory. Two kinds of table are not plain settings
and are parsed here whole: the ``[models."<name>"]`` catalogue of context
windows and prices, and the ``[mcp.servers.<name>]`` servers. Separate from
``_config.py`` because only the file source needs any of it.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

from attrs import evolve

from agents import ConfigError
from agents._core._budget import ModelCatalog, ModelLimits
from agents.mcp import McpServerConfig, StdioTransport, parse_servers
from sessions import is_postgres_dsn

from ._config_settings import API_KEY_ENV, MEMORY_DB, TOML_KEYS
from ._errors import ConfigurationError

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
    except UnicodeDecodeError as error:  # TOML is UTF-8; tomllib lets this through
        raise ConfigurationError(
            f"config file {path} is not valid TOML: not UTF-8 at byte {error.start}"
        ) from None
    by_location = {location: name for name, location in TOML_KEYS.items()}
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
    known = [key for where, key in TOML_KEYS.values() if where == section]
    if known:
        return f"[{section}] has {', '.join(known)}"
    sections = {where for where, _ in TOML_KEYS.values()} | {_MODELS_SECTION}
    return "sections: " + ", ".join(sorted(sections))
