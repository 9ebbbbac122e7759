"""Browser fixtures: a live server (scripted model) and a headless Chromium page."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from tests.browser.cdp import Page, launch, require_chromium
from tests.server.helpers import LiveServer, make_config, start_server


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip (or, under CI, fail) a page test before any fixture starts.

    Skipping from inside the async ``page`` fixture, with the ``server``
    fixture's tasks already running in the test's nursery, left the test hanging.
    """
    if "page" in getattr(item, "fixturenames", ()):
        require_chromium()


@pytest.fixture
async def server(nursery: trio.Nursery) -> LiveServer:
    return await start_server(nursery, make_config())


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with launch() as page:
        yield page
        assert not page.problems, page.problems
