"""Hooks for the whole suite."""

from __future__ import annotations

import logging
from collections.abc import Generator

import pytest

# The loggers whose level the CLI's configure_logging sets.
_CONFIGURED = ("", "httpx")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Give every test the logging configuration the one before it had.

    A test that runs the CLI's ``main`` gets ``configure_logging``. That is right
    for a process, but it replaces the root logger's handlers with one bound to
    that test's captured stderr. The stream closes after the test, so every later
    record failed to write and printed a "Logging error" traceback, and pytest's
    own handlers were gone. Levels leak the same way.
    """
    loggers = [logging.getLogger(name) for name in _CONFIGURED]
    levels = [logger.level for logger in loggers]
    handlers = loggers[0].handlers[:]
    try:
        return (yield)
    finally:
        loggers[0].handlers = handlers
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
