"""Live-server fixtures: the real ``serve()`` on 127.0.0.1:0 (helpers in ``helpers.py``).

A test that needs a turn still streaming while it acts holds the scripted reply at
a gate (``gates.py``) instead of pacing it by the clock.
"""

from __future__ import annotations

import pytest
import trio

from tests.server.helpers import LiveServer, make_config, start_server


@pytest.fixture
async def server(nursery: trio.Nursery) -> LiveServer:
    return await start_server(nursery, make_config())
