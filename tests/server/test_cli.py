"""The CLI in-process: argument forms, the start-up banner and the error sentences."""

from __future__ import annotations

import errno
import os
import socket
import stat
import sys
from pathlib import Path

import pytest
import trio

from server import ConfigurationError, ServeConfig
from server._cli import main
from server._startup import banner, bind_error, command_name, describe_failure
from sessions import single_error


def test_store_flags_work_before_and_after_the_action(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # where a lost --db would go
    assert main(["sessions", "list", "--db", str(tmp_path / "after.db")]) == 0  # README's form
    assert main(["sessions", "--db", str(tmp_path / "before.db"), "show", "ses_x"]) == 1
    assert capsys.readouterr().out == "no sessions\n"
    assert (tmp_path / "after.db").exists()
    assert (tmp_path / "before.db").exists()
    assert not (tmp_path / "data").exists()


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("agent-runtime 0.")


def test_a_config_error_is_one_line_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # (``sessions``, not ``serve``: serve would install its log handler in this process.)
    bad = tmp_path / "bad.toml"
    bad.write_text("[llm]\nretries = -1\n", encoding="utf-8")
    assert main(["sessions", "list", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"agent-runtime: {bad}: [llm] retries: expected a non-negative integer, got -1\n"


def _fake_script(directory: Path) -> Path:
    script = directory / "agent-runtime"
    script.write_text("#!/bin/sh\n", encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_command_name_is_the_bare_name_only_when_path_finds_this_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = _fake_script(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(script), "serve"])
    monkeypatch.setenv("PATH", str(tmp_path))
    assert command_name() == "agent-runtime"
    monkeypatch.setenv("PATH", os.defpath)
    assert command_name() == str(script)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["./agent-runtime", "serve"])  # relative, as typed
    assert command_name() == str(script)


def test_command_name_under_python_dash_m(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "__main__.py")])
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", os.defpath)
    assert command_name() == f"{tmp_path / 'python'} -m server"
    script = _fake_script(tmp_path)
    assert command_name() == str(script)  # the console script beside the interpreter


def test_banner_names_url_database_and_model(tmp_path: Path) -> None:
    lines = banner(ServeConfig(db=str(tmp_path / "x.db")), "http://127.0.0.1:1", None)
    assert lines[:2] == ["listening on http://127.0.0.1:1", f"database: {tmp_path / 'x.db'}"]
    assert lines[2].startswith("model: scripted (offline demo)")
    assert lines[3] == "web console: open http://127.0.0.1:1/ (sign in with a token)"
    assert len(lines) == 4
    memory = banner(ServeConfig(db=":memory:"), "http://h:1", "tok")
    assert memory[1] == "database: in memory (sessions are lost when the server stops)"
    assert "curl -sS -H 'Authorization: Bearer tok' http://h:1/v1/sessions" in memory[5]
    assert memory[6].endswith(" chat --url http://h:1 --token tok")


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        (OSError(errno.EADDRINUSE, "Address already in use"), "pass --port (0 picks a free one)"),
        (OSError(errno.EACCES, "Permission denied"), "ports below 1024 need privileges"),
        (OSError(errno.EADDRNOTAVAIL, "Cannot assign"), "--host must be an address"),
        (socket.gaierror(-2, "Name or service not known"), "--host must be an address or name"),
    ],
)
def test_bind_errors_say_what_to_do(error: OSError, fix: str) -> None:
    message = str(bind_error("::1", 80, error))
    assert message.startswith(f"cannot listen on [::1]:80: {error.strerror}; ")
    assert fix in message


def test_single_error_looks_through_groups_but_not_past_two_errors() -> None:
    inner = ConfigurationError("bad")
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [inner])])
    assert single_error(nested) is inner
    two = ExceptionGroup("two", [ValueError("a"), ConfigurationError("b")])
    assert single_error(two) is two
    with_cancelled = BaseExceptionGroup("g", [trio.Cancelled._create(), inner])
    assert single_error(with_cancelled) is inner


def test_describe_failure_keeps_bugs_as_bugs() -> None:
    assert describe_failure(ConfigurationError("bad port")) == "bad port"
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "/x")
    assert describe_failure(missing) == "No such file or directory: /x"
    assert describe_failure(KeyError("bug")) is None


def test_serving_tunes_the_cyclic_collector() -> None:
    import gc

    from server._cli import GC_THRESHOLDS, tune_gc

    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > 700  # rarer than CPython's default
        assert gc.get_freeze_count() > frozen  # start-up's objects are left alone
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
