"""Browser fixtures: a live server (scripted model) and a headless Chromium page."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from tests.browser.cdp import Page, launch
from tests.server.helpers import LiveServer, make_config, start_server


@pytest.fixture
async def server(nursery: trio.Nursery) -> LiveServer:
    return await start_server(nursery, make_config())


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with launch() as page:
        yield page
        assert not page.problems, page.problems
