"""``switch_model`` over a live WebSocket: the ack, ``model.switched``, and the next turn."""

from __future__ import annotations

import io

from server.chat._render import Renderer
from tests.server.helpers import LiveServer, ended


async def test_switch_model_over_websocket(server: LiveServer) -> None:
    session_id = await server.new_session(agent="ask")
    async with server.ws(session_id) as client:
        ack = await client.command({"type": "switch_model", "id": "m1", "model": "big-model"})
        assert ack == {"type": "ack", "id": "m1", "status": "accepted"}
        (switched,) = await client.until_type("model.switched")
        assert (switched["from"], switched["to"]) == (None, "big-model")
        assert "turn_id" not in switched

        await client.command({"type": "user_message", "id": "u1", "content": "explain x"})
        events = await client.until(ended)
        started = next(e for e in events if e["type"] == "turn.started")
        assert started["model"] == "big-model"
        assert {e["model"] for e in events if e["type"] == "usage"} == {"big-model"}

        again = await client.command({"type": "switch_model", "id": "m1", "model": None})
        assert again["status"] == "duplicate"
        bad = await client.command({"type": "switch_model", "id": "m2", "model": ""})
        assert (bad["status"], bad["code"]) == ("rejected", "invalid_command")

        back = await client.command({"type": "switch_model", "id": "m3", "model": None})
        assert back["status"] == "accepted"
        (reset,) = await client.until_type("model.switched")
        assert (reset["from"], reset["to"]) == ("big-model", None)


def test_the_terminal_client_shows_a_model_switch() -> None:
    out = io.StringIO()
    renderer = Renderer(out)
    for seq, to in ((1, "big\x1b[2J-model"), (2, None)):
        renderer.event(
            {
                "seq": seq,
                "session_id": "s",
                "type": "model.switched",
                "ts": 0.0,
                "from": None,
                "to": to,
            }
        )
    assert out.getvalue() == "[model switched to big\\x1b[2J-model]\n[model back to default]\n"
