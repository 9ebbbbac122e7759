"""Configuration precedence, validation, auth helpers and log formatting."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import trio

from agents._core._budget import SCRIPTED_LIMITS, ModelLimits
from agents._providers._openai import OpenAIClient
from server import (
    Authenticator,
    ConfigurationError,
    ServeConfig,
    ensure_tokens,
    is_loopback,
    load_config,
    serve,
)
from server._auth import bearer_token
from server._cli import main
from server._config import default_db_path, parse_tokens
from server._logging import JsonFormatter, configure_logging, redact_query
from server._runtime import open_model, runtime_config
from tests.fakes.openai_server import Stall, Stream, open_fake_openai
from tests.server.helpers import LiveServer, ended, make_config, start_server
from tests.server.test_readme_commands import ROOT, code_blocks


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    config = load_config()
    assert (config.host, config.port, config.llm, config.log_format) == (
        "127.0.0.1",
        8765,
        "scripted",
        "text",
    )
    assert config.db == default_db_path()
    assert config.db.endswith("sessions.db")
    assert config.limits.max_message_bytes == 1024 * 1024
    assert config.heartbeat_interval == 15.0
    assert config.tokens == {}


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    file = write(
        tmp_path / "agent.toml",
        """
        [server]
        host = "127.0.0.2"
        port = 9000
        db = "data/s.db"
        [llm]
        provider = "openai"
        model = "from-file"
        [limits]
        commands_per_second = 5
        [auth]
        tokens = { "file-token" = "carol" }
        """,
    )
    env = {"AGENT_RUNTIME_PORT": "9001", "AGENT_RUNTIME_MODEL": "from-env"}
    config = load_config(flags={"port": 9002, "host": None}, env=env, config_file=file)
    assert config.port == 9002  # flag beats env and file
    assert config.model == "from-env"  # env beats file
    assert config.host == "127.0.0.2"  # file beats default; a None flag is "not given"
    assert config.llm == "openai"
    assert config.db == str(tmp_path / "data" / "s.db")  # relative to the file
    assert config.limits.commands_per_second == 5.0
    assert config.tokens == {"file-token": "carol"}
    env_tokens = load_config(env={"AGENT_RUNTIME_TOKENS": "a:alice, b:bob"}, config_file=file)
    assert env_tokens.tokens == {"a": "alice", "b": "bob"}


def test_config_file_from_env_and_api_key_only_from_env(tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", '[llm]\nurl = "http://127.0.0.1:1/v1"\n')
    env = {"AGENT_RUNTIME_CONFIG": str(file), "AGENT_RUNTIME_LLM_API_KEY": "sk-secret"}
    config = load_config(env=env)
    assert config.llm_url == "http://127.0.0.1:1/v1"
    assert config.api_key == "sk-secret"
    assert "sk-secret" not in repr(config)
    with pytest.raises(ConfigurationError, match="AGENT_RUNTIME_LLM_API_KEY"):
        load_config(config_file=write(tmp_path / "k.toml", '[llm]\napi_key = "sk"\n'))


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[server]\nport = 'eighty'\n", "port"),
        ("[server]\nport = 70000\n", "port"),
        ("[server]\ndurability = 'maybe'\n", "durability"),
        ("[llm]\nprovider = 'magic'\n", "llm"),
        ("[server]\nhots = 'x'\n", r"unknown setting \[server\] hots"),
        ("port = 1\n", "must be a \\[section\\]"),
        ("[auth]\ntokens = ['a']\n", "tokens"),
        ("not toml at all", "not valid TOML"),
        ("[limits]\nmax_message_bytes = 10\n", "max_message_bytes"),
    ],
)
def test_invalid_files_are_refused_clearly(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_config(config_file=write(tmp_path / "bad.toml", toml))


def test_a_bad_value_is_refused_even_where_a_flag_or_variable_overrides_it(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "bad.toml", "[server]\nport = 'abc'\n")
    with pytest.raises(ConfigurationError, match=r"bad.toml: \[server\] port: expected an int"):
        load_config(config_file=path, flags={"port": 0})
    with pytest.raises(ConfigurationError, match=r"bad.toml: \[server\] port: expected an int"):
        load_config(config_file=path, env={"AGENT_RUNTIME_PORT": "0"})
    with pytest.raises(ConfigurationError, match=r"^AGENT_RUNTIME_PORT: expected an integer"):
        load_config(env={"AGENT_RUNTIME_PORT": "x"}, flags={"port": 0})
    assert load_config(env={"AGENT_RUNTIME_PORT": "1"}, flags={"port": 0}).port == 0


def test_a_file_that_is_not_utf8_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"[server]\nhost = '\xe9'\n")
    with pytest.raises(ConfigurationError, match="is not valid TOML: not UTF-8 at byte 17"):
        load_config(config_file=path)


def test_invalid_env_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"^AGENT_RUNTIME_PORT: expected an integer"):
        load_config(env={"AGENT_RUNTIME_PORT": "x"})
    with pytest.raises(ConfigurationError, match="entry 2"):
        parse_tokens("good:alice,bad")
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_config(config_file=tmp_path / "missing.toml")


def test_authenticator_and_bearer_parsing() -> None:
    auth = Authenticator({"t1": "alice", "t2": "bob"})
    assert auth.principal("t1") == "alice"
    assert auth.principal("t2") == "bob"
    assert auth.principal("t3") is None
    assert auth.principal("") is None
    assert auth.principal(None) is None
    assert "t1" not in repr(auth)
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None
    assert bearer_token(None) is None


def test_tokens_are_generated_only_on_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    config, token = ensure_tokens(ServeConfig(host="127.0.0.1"))
    assert token is not None and config.tokens == {token: "local"}
    configured = ServeConfig(tokens={"x": "alice"})
    assert ensure_tokens(configured) == (configured, None)
    with pytest.raises(ConfigurationError, match=r"refusing to listen on 0\.0\.0\.0"):
        ensure_tokens(ServeConfig(host="0.0.0.0"))


async def test_serve_refuses_public_bind_without_tokens() -> None:
    with pytest.raises(ConfigurationError, match="without authentication"):
        await serve(make_config(host="0.0.0.0", tokens={}))


async def test_serve_reports_bad_modes_file(tmp_path: Path) -> None:
    bad = write(tmp_path / "modes.toml", "[modes.coder]\ntools = 5\n")
    with pytest.raises(ConfigurationError):
        await serve(make_config(modes=bad))


def test_query_redaction() -> None:
    assert redact_query("") == ""
    assert redact_query("after=3&access_token=s3cret") == "after=3&access_token=REDACTED"
    assert redact_query("token=x&TOKEN=y") == "token=REDACTED&TOKEN=REDACTED"
    assert "s3cret" not in redact_query("a=1&access_token=s3cret&b=2")


def test_json_formatter_writes_one_object_per_line() -> None:
    record = logging.LogRecord(
        "agent_runtime.x", logging.INFO, __file__, 1, "hi %s", ("you",), None
    )
    record.session_id = "ses_1"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "hi you"
    assert data["level"] == "info"
    assert data["logger"] == "agent_runtime.x"
    assert data["session_id"] == "ses_1"


async def test_access_log_redacts_tokens(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    session_id = await server.new_session()
    async with server.http(token=None) as anonymous:
        await anonymous.get(
            f"/v1/sessions/{session_id}/events", params={"access_token": "alice-token"}
        )
        await anonymous.get("/health", headers={"Authorization": "Bearer alice-token"})
    access = [r for r in caplog.records if r.name == "agent_runtime.access"]
    assert any(getattr(r, "query", "") == "access_token=REDACTED" for r in access)
    server_side = ("agent_runtime", "hypercorn", "quart")
    for record in (r for r in caplog.records if r.name.startswith(server_side)):
        assert "alice-token" not in record.getMessage()
        assert "alice-token" not in json.dumps(vars(record), default=str)


def test_model_client_patience_defaults_and_precedence(tmp_path: Path) -> None:
    defaults = load_config()
    assert (
        defaults.llm_connect_timeout,
        defaults.llm_first_token_timeout,
        defaults.llm_idle_timeout,
        defaults.llm_retries,
    ) == (10.0, 60.0, 60.0, 3)
    file = write(
        tmp_path / "agent.toml",
        "[llm]\nconnect_timeout = 4\nfirst_token_timeout = 30.5\nidle_timeout = 20\nretries = 1\n",
    )
    env = {"AGENT_RUNTIME_LLM_IDLE_TIMEOUT": "7.5", "AGENT_RUNTIME_LLM_RETRIES": "2"}
    config = load_config(flags={"llm_retries": "0"}, env=env, config_file=file)
    assert config.llm_connect_timeout == 4.0  # file beats default
    assert config.llm_first_token_timeout == 30.5
    assert config.llm_idle_timeout == 7.5  # env beats file
    assert config.llm_retries == 0  # flag beats env; zero means "never retry"


@pytest.mark.parametrize(
    ("source", "value", "message"),
    [
        ("flag", "0", r"^--llm-connect-timeout: expected a positive number of seconds, got '0'"),
        ("flag", "-2", r"^--llm-connect-timeout: expected a positive"),
        ("flag", "soon", r"^--llm-connect-timeout: expected a positive number of seconds"),
        ("flag", "nan", r"^--llm-connect-timeout: expected a positive"),
        ("flag", "inf", r"^--llm-connect-timeout: expected a positive"),
        ("env", "0", r"^AGENT_RUNTIME_LLM_CONNECT_TIMEOUT: expected a positive"),
        ("file", "0", r"agent\.toml: \[llm\] connect_timeout: expected a positive"),
        ("file", "'ten'", r"agent\.toml: \[llm\] connect_timeout: expected a positive"),
        ("file", "true", r"agent\.toml: \[llm\] connect_timeout: expected a positive"),
    ],
)
def test_model_client_timeouts_are_validated_naming_their_source(
    tmp_path: Path, source: str, value: str, message: str
) -> None:
    file = write(tmp_path / "agent.toml", f"[llm]\nconnect_timeout = {value}\n")
    with pytest.raises(ConfigurationError, match=message):
        if source == "flag":
            load_config(flags={"llm_connect_timeout": value})
        elif source == "env":
            load_config(env={"AGENT_RUNTIME_LLM_CONNECT_TIMEOUT": value})
        else:
            load_config(config_file=file)


@pytest.mark.parametrize("value", ["-1", "1.5", "many"])
def test_model_client_retries_must_be_a_non_negative_integer(value: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^--llm-retries: expected"):
        load_config(flags={"llm_retries": value})


def test_non_finite_numbers_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"^AGENT_RUNTIME_HEARTBEAT_INTERVAL: expected"):
        load_config(env={"AGENT_RUNTIME_HEARTBEAT_INTERVAL": "nan"})


def test_unknown_key_lists_the_keys_of_its_section(tmp_path: Path) -> None:
    file = write(tmp_path / "agent.toml", "[llm]\ntimeout = 5\n")
    with pytest.raises(ConfigurationError, match=r"\[llm\] has provider, url, model, pace, "):
        load_config(config_file=file)
    other = write(tmp_path / "other.toml", "[serve]\nport = 5\n")
    sections = "sections: agents, auth, context, limits, llm, models, server"
    with pytest.raises(ConfigurationError, match=sections):
        load_config(config_file=other)


def test_mode_and_policy_flags_accept_paths(tmp_path: Path) -> None:
    # argparse hands these flags over as Path objects (the README's --modes FILE form).
    config = load_config(flags={"modes": tmp_path / "m.toml", "policy": tmp_path / "p.toml"})
    assert config.modes == tmp_path / "m.toml"
    assert config.policy == tmp_path / "p.toml"


async def test_the_openai_client_gets_the_configured_patience() -> None:
    config = make_config(
        llm="openai",
        llm_url="http://127.0.0.1:9/v1",
        llm_connect_timeout=1.5,
        llm_first_token_timeout=2.5,
        llm_idle_timeout=3.5,
        llm_retries=1,
    )
    async with open_model(config) as client:
        assert isinstance(client, OpenAIClient)
        patience = (
            client.connect_timeout,
            client.first_token_timeout,
            client.idle_timeout,
            client.max_retries,
        )
        assert patience == (1.5, 2.5, 3.5, 1)


async def test_a_served_turn_obeys_the_configured_first_token_timeout(
    nursery: trio.Nursery,
) -> None:
    async with open_fake_openai([Stream((Stall(),))] * 5) as fake:
        config = make_config(
            llm="openai",
            llm_url=fake.base_url,
            llm_first_token_timeout=0.2,
            llm_retries=0,
        )
        server = await start_server(nursery, config)
        session_id = await server.new_session(agent="ask")
        async with server.ws(session_id) as client:
            await client.command({"type": "user_message", "id": "m", "content": "hi"})
            events = await client.until(ended)  # bounded by STEP, far below the default 60 s
        assert events[-1]["reason"] == "error"
        errors = [e for e in events if e["type"] == "error"]
        assert errors and "within 0.2s" in errors[0]["message"]
        assert len(fake.requests) == 1  # no retries
        server.shutdown.set()


def test_model_connection_pool_limits_are_settings(tmp_path: Path) -> None:
    defaults = load_config()
    assert (defaults.llm_max_connections, defaults.llm_max_keepalive) == (100, 100)
    file = write(tmp_path / "agent.toml", "[llm]\nmax_connections = 8\nmax_keepalive = 2\n")
    config = load_config(flags={"llm_max_keepalive": "4"}, env={}, config_file=file)
    assert (config.llm_max_connections, config.llm_max_keepalive) == (8, 4)
    with pytest.raises(ConfigurationError, match=r"^--llm-max-connections: expected a positive"):
        load_config(flags={"llm_max_connections": "0"})


def test_the_subtask_depth_is_a_setting(tmp_path: Path) -> None:
    assert load_config().max_subtask_depth == 4
    file = write(tmp_path / "agent.toml", "[agents]\nmax_subtask_depth = 2\n")
    assert load_config(config_file=file).max_subtask_depth == 2
    assert load_config(env={"AGENT_RUNTIME_MAX_SUBTASK_DEPTH": "1"}).max_subtask_depth == 1
    with pytest.raises(ConfigurationError, match="AGENT_RUNTIME_MAX_SUBTASK_DEPTH: expected a pos"):
        load_config(env={"AGENT_RUNTIME_MAX_SUBTASK_DEPTH": "0"})


def test_live_session_eviction_settings(tmp_path: Path) -> None:
    defaults = load_config()
    assert (defaults.session_idle_ttl, defaults.max_idle_sessions) == (60.0, 1000)
    file = write(tmp_path / "agent.toml", "[agents]\nsession_idle_ttl = 5\nmax_idle_sessions = 0\n")
    config = load_config(config_file=file)
    assert (config.session_idle_ttl, config.max_idle_sessions) == (5.0, 0)
    with pytest.raises(
        ConfigurationError, match="AGENT_RUNTIME_SESSION_IDLE_TTL: expected a positive"
    ):
        load_config(env={"AGENT_RUNTIME_SESSION_IDLE_TTL": "0"})


def test_an_unknown_model_provider_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"openai.*scripted|scripted.*openai"):
        load_config(env={"AGENT_RUNTIME_LLM": "nosuch"})


MODELS_TOML = """
[models."gpt-4o-mini"]
context_window = 128000
max_output_tokens = 16384
input_price = 0.15
output_price = 0.60
cached_input_price = 0.075

[models."local/qwen.2"]
context_window = 32768

[models.default]
context_window = 64000
max_output_tokens = 2048
"""


def test_model_tables_build_the_catalog(tmp_path: Path) -> None:
    config = load_config(config_file=write(tmp_path / "agent.toml", MODELS_TOML))
    assert config.models.limits("gpt-4o-mini") == ModelLimits(
        context_window=128000,
        max_output_tokens=16384,
        input_price=0.15,
        output_price=0.60,
        cached_input_price=0.075,
    )
    # Keys a table leaves out keep the built-in values, not [models.default]'s.
    assert config.models.limits("local/qwen.2") == ModelLimits(context_window=32768)
    assert config.models.limits("scripted") == SCRIPTED_LIMITS  # the built-in entry stays
    assert config.models.limits("unlisted") == ModelLimits(64000, 2048)
    assert config.models.default == ModelLimits(64000, 2048)


def test_model_defaults_without_a_file() -> None:
    models = load_config().models
    assert models.limits("scripted") == SCRIPTED_LIMITS
    assert models.limits("gpt-4o-mini") == ModelLimits()
    assert (models.default.context_window, models.default.max_output_tokens) == (128000, 4096)
    assert models.default.cost(1000, 1000) is None


def test_a_file_may_override_the_scripted_model(tmp_path: Path) -> None:
    file = write(tmp_path / "agent.toml", "[models.scripted]\ncontext_window = 2048\n")
    limits = load_config(config_file=file).models.limits("scripted")
    assert limits == ModelLimits(context_window=2048, max_output_tokens=512)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[models."gpt-4o"]\nwindow = 5\n',
            r'agent\.toml: \[models\."gpt-4o"\]: unknown key window; a model has context_window',
        ),
        (
            '[models."gpt-4o"]\ncontext_window = "128k"\n',
            r'\[models\."gpt-4o"\] context_window: expected a positive integer, got \'128k\'',
        ),
        (
            '[models."gpt-4o"]\ncontext_window = 1.5e5\n',
            r'\[models\."gpt-4o"\] context_window: expected a positive integer',
        ),
        (
            '[models."gpt-4o"]\ncontext_window = 0\n',
            r'\[models\."gpt-4o"\] context_window: expected a positive integer, got 0',
        ),
        (
            '[models."gpt-4o"]\ncontext_window = -5\n',
            r'\[models\."gpt-4o"\] context_window: expected a positive integer',
        ),
        (
            '[models."gpt-4o"]\nmax_output_tokens = true\n',
            r'\[models\."gpt-4o"\] max_output_tokens: expected a positive integer',
        ),
        (
            '[models."gpt-4o"]\ncontext_window = 4096\nmax_output_tokens = 4096\n',
            r'\[models\."gpt-4o"\] max_output_tokens \(4096\) must be smaller than '
            r"context_window \(4096\)",
        ),
        (
            "[models.default]\ncontext_window = 1000\n",
            r"agent\.toml: \[models\.default\] max_output_tokens \(4096\) must be smaller",
        ),
        (
            '[models."gpt-4o"]\ninput_price = "cheap"\n',
            r'\[models\."gpt-4o"\] input_price: expected a non-negative number',
        ),
        (
            '[models."gpt-4o"]\noutput_price = -1\n',
            r'\[models\."gpt-4o"\] output_price: expected a non-negative number',
        ),
        (
            '[models."gpt-4o"]\ncached_input_price = nan\n',
            r'\[models\."gpt-4o"\] cached_input_price: expected a non-negative number',
        ),
        (
            "[models]\ncontext_window = 128000\n",
            r"\[models\] context_window = 128000: each model is a table",
        ),
        ("models = 1\n", "must be a \\[section\\]"),
    ],
)
def test_invalid_model_tables_are_refused_naming_table_and_key(
    tmp_path: Path, toml: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_config(config_file=write(tmp_path / "agent.toml", toml))


def test_context_settings_defaults_file_and_env(tmp_path: Path) -> None:
    defaults = load_config()
    assert (
        defaults.compact_at,
        defaults.keep_user_messages,
        defaults.compaction_model,
        defaults.tool_result_share,
    ) == (0.8, 2, None, 0.25)
    file = write(
        tmp_path / "agent.toml",
        "[context]\ncompact_at = 1\nkeep_user_messages = 0\n"
        'compaction_model = "gpt-4o-mini"\ntool_result_share = 0.5\n',
    )
    config = load_config(config_file=file)
    assert (
        config.compact_at,
        config.keep_user_messages,
        config.compaction_model,
        config.tool_result_share,
    ) == (1.0, 0, "gpt-4o-mini", 0.5)
    env = {
        "AGENT_RUNTIME_COMPACT_AT": "0.6",
        "AGENT_RUNTIME_KEEP_USER_MESSAGES": "4",
        "AGENT_RUNTIME_COMPACTION_MODEL": "small",
        "AGENT_RUNTIME_TOOL_RESULT_SHARE": "0.1",
    }
    overridden = load_config(env=env, config_file=file)  # env beats the file
    assert (
        overridden.compact_at,
        overridden.keep_user_messages,
        overridden.compaction_model,
        overridden.tool_result_share,
    ) == (0.6, 4, "small", 0.1)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("compact_at", "0", "compact_at: expected a number above 0 and at most 1, got 0"),
        ("compact_at", "1.01", "compact_at: expected a number above 0 and at most 1"),
        ("compact_at", "-0.5", "compact_at: expected a number above 0 and at most 1"),
        ("compact_at", "'high'", "compact_at: expected a number above 0 and at most 1"),
        ("keep_user_messages", "-1", "keep_user_messages: expected a non-negative integer"),
        ("keep_user_messages", "1.5", "keep_user_messages: expected a non-negative integer"),
        ("compaction_model", "''", "compaction_model: expected a non-empty string"),
        ("compaction_model", "3", "compaction_model: expected a non-empty string"),
        ("tool_result_share", "0", "tool_result_share: expected a number between 0 and 1"),
        ("tool_result_share", "1", "tool_result_share: expected a number between 0 and 1"),
        ("tool_result_share", "true", "tool_result_share: expected a number between 0 and 1"),
    ],
)
def test_invalid_context_settings_are_refused(
    tmp_path: Path, key: str, value: str, message: str
) -> None:
    file = write(tmp_path / "agent.toml", f"[context]\n{key} = {value}\n")
    with pytest.raises(ConfigurationError, match=rf"agent\.toml: \[context\] {message}"):
        load_config(config_file=file)


def test_invalid_context_variables_name_the_variable() -> None:
    with pytest.raises(ConfigurationError, match=r"^AGENT_RUNTIME_COMPACT_AT: expected"):
        load_config(env={"AGENT_RUNTIME_COMPACT_AT": "nan"})
    with pytest.raises(ConfigurationError, match=r"^AGENT_RUNTIME_TOOL_RESULT_SHARE: expected"):
        load_config(env={"AGENT_RUNTIME_TOOL_RESULT_SHARE": "2"})
    with pytest.raises(ConfigurationError, match=r"^AGENT_RUNTIME_KEEP_USER_MESSAGES: expected"):
        load_config(env={"AGENT_RUNTIME_KEEP_USER_MESSAGES": "some"})


def test_unknown_context_key_lists_the_section(tmp_path: Path) -> None:
    file = write(tmp_path / "agent.toml", "[context]\ncompact = 0.5\n")
    with pytest.raises(ConfigurationError, match=r"\[context\] has compact_at, keep_user_messages"):
        load_config(config_file=file)


def test_the_runtime_gets_the_models_and_context_settings(tmp_path: Path) -> None:
    file = write(
        tmp_path / "agent.toml",
        MODELS_TOML + '[context]\ncompact_at = 0.9\ncompaction_model = "gpt-4o-mini"\n',
    )
    config = load_config(env={"AGENT_RUNTIME_KEEP_USER_MESSAGES": "3"}, config_file=file)
    runtime = runtime_config(config)
    assert runtime.models is config.models
    assert runtime.models.limits("gpt-4o-mini").input_price == 0.15
    assert (runtime.compact_at, runtime.keep_user_messages) == (0.9, 3)
    assert (runtime.compaction_model, runtime.tool_result_share) == ("gpt-4o-mini", 0.25)
    defaults = runtime_config(load_config())
    assert defaults.models.limits("scripted") == SCRIPTED_LIMITS
    assert (defaults.compact_at, defaults.compaction_model) == (0.8, None)


def test_a_bad_model_table_exits_the_cli_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path / "agent.toml", '[models."m"]\ncontext_window = 0\n')
    assert main(["serve", "--config", str(file)]) == 2
    err = capsys.readouterr().err
    assert '[models."m"] context_window: expected a positive integer, got 0' in err


def test_the_readme_models_example_loads_with_the_documented_values(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme.split("## Models and context windows", 1)[1].split("\n## ", 1)[0]
    [example] = code_blocks(section, "toml")
    config = load_config(config_file=write(tmp_path / "agent.toml", example))
    assert config.models.limits("gpt-4o-mini") == ModelLimits(128000, 16384, 0.15, 0.60, 0.075)
    assert (config.compact_at, config.keep_user_messages) == (0.8, 2)
    assert (config.compaction_model, config.tool_result_share) == (None, 0.25)
    assert config.models.limits("unknown") == ModelLimits(128000, 4096)
    bad = write(tmp_path / "bad.toml", '[models."gpt-4o-mini"]\nmax_output_tokens = 200000\n')
    documented = (
        '[models."gpt-4o-mini"] max_output_tokens (200000) must be smaller than '
        "context_window (128000)"
    )
    with pytest.raises(ConfigurationError) as info:
        load_config(config_file=bad)
    assert str(info.value) == f"{bad}: {documented}"
    assert documented.replace("\n", " ") in " ".join(section.split())


def test_mcp_servers_come_from_the_file_with_cwd_relative_to_it(tmp_path: Path) -> None:
    from agents.mcp import StdioTransport

    config_file = write(
        tmp_path / "agent.toml",
        '[mcp.servers.docs]\ncommand = "docs-server"\ncwd = "srv"\ntrusted = true\n'
        '[mcp.servers.web]\nurl = "http://127.0.0.1:9/mcp"\n',
    )
    config = load_config(config_file=config_file)
    docs, web = config.mcp_servers
    assert isinstance(docs.transport, StdioTransport)
    assert docs.transport.cwd == str(tmp_path / "srv") and docs.trusted
    assert web.name == "web"
    bad = write(tmp_path / "bad.toml", '[mcp.servers.docs]\nurl = "ftp://x"\n')
    with pytest.raises(ConfigurationError, match=r"bad\.toml: mcp\.servers\.docs: 'url' must be"):
        load_config(config_file=bad)


async def test_serve_refuses_a_mode_selecting_an_unconfigured_mcp_server(tmp_path: Path) -> None:
    modes = write(tmp_path / "modes.toml", '[modes.coder]\nmcp = ["docs"]\n')
    with pytest.raises(ConfigurationError, match=r"mcp entry 'docs' names no MCP server"):
        await serve(make_config(modes=modes))


async def test_serve_says_how_to_install_the_mcp_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from agents.mcp import McpServerConfig, StdioTransport

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mcp" else real(name, *a)
    )
    servers = (McpServerConfig("docs", StdioTransport("docs-server")),)
    with pytest.raises(ConfigurationError, match=r"pip install 'agent-runtime\[mcp\]'"):
        await serve(make_config(mcp_servers=servers))


def test_the_readme_mcp_example_loads(tmp_path: Path) -> None:
    from server._runtime import load_agents

    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme[readme.index("## MCP servers") :]
    agent_toml, modes_toml = code_blocks(section, "toml")[:2]
    write(tmp_path / "modes.toml", modes_toml)
    config = load_config(config_file=write(tmp_path / "agent.toml", agent_toml))
    assert [s.name for s in config.mcp_servers] == ["time", "tracker"]
    modes, _ = load_agents(config)
    assert [str(s) for s in modes.get("coder").mcp] == ["time", "tracker/search_*"]


def test_upstream_request_lines_are_logged_only_at_debug() -> None:
    # tests/conftest.py puts the logging configuration back after the test.
    configure_logging("text", logging.INFO)
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
    assert logging.getLogger("agent_runtime.server").isEnabledFor(logging.INFO)
    configure_logging("text", logging.DEBUG)
    assert logging.getLogger("httpx").isEnabledFor(logging.INFO)
