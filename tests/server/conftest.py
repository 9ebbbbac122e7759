"""Live-server fixtures: the real ``serve()`` on 127.0.0.1:0 (helpers in ``helpers.py``)."""

from __future__ import annotations

import pytest
import trio

from tests.server.helpers import LiveServer, make_config, start_server


@pytest.fixture
async def server(nursery: trio.Nursery) -> LiveServer:
    return await start_server(nursery, make_config())


@pytest.fixture
async def paced_server(nursery: trio.Nursery) -> LiveServer:
    """Streams one word every 10 ms, so a turn is still running while a test acts."""
    return await start_server(nursery, make_config(scripted_pace=0.01))
