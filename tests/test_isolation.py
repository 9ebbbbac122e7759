"""The suite's own isolation: what one test does to logging does not reach the next.

The two tests run in file order. The first does what a CLI run does; the second
checks that none of it is left (tests/conftest.py puts it back).
"""

from __future__ import annotations

import logging

import pytest

from server._logging import configure_logging

# At collection, before any test ran.
_ROOT_LEVEL = logging.getLogger().level
_HTTPX_LEVEL = logging.getLogger("httpx").level


def test_a_cli_run_routes_logging_to_its_own_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("text", logging.DEBUG)
    logging.getLogger("agent_runtime.test").info("to this test's stderr")
    assert "to this test's stderr" in capsys.readouterr().err


def test_the_next_test_has_the_logging_it_had_before() -> None:
    root = logging.getLogger()
    # pytest's own handlers subclass StreamHandler; configure_logging's is a plain one.
    assert not [h for h in root.handlers if type(h) is logging.StreamHandler]
    assert root.level == _ROOT_LEVEL
    assert logging.getLogger("httpx").level == _HTTPX_LEVEL
