"""Live-server fixture for the chat client's tests: the real ``serve()`` on 127.0.0.1:0."""

from __future__ import annotations

import pytest
import trio

from tests.server.helpers import LiveServer, make_config, start_server


@pytest.fixture
async def server(nursery: trio.Nursery) -> LiveServer:
    return await start_server(nursery, make_config())
