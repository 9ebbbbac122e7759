"""REST API of SPEC §7 against the live server: resources, pagination, errors, auth."""

from __future__ import annotations

from pathlib import Path

import trio

from agents._core._budget import SCRIPTED_LIMITS, ModelCatalog, ModelLimits
from tests.server.helpers import (
    ALICE,
    BOB,
    LiveServer,
    drive_turn,
    make_config,
    small_limits,
    start_server,
)


async def test_health_is_public_everything_else_needs_a_token(server: LiveServer) -> None:
    async with server.http(token=None) as anonymous:
        health = await anonymous.get("/health")
        assert (health.status_code, health.json()) == (200, {"status": "ok", "store": {"ok": True}})
        for path in ("/v1/agents", "/v1/sessions", "/metrics", "/v1/sessions/x/events"):
            response = await anonymous.get(path)
            assert response.status_code == 401, path
            assert response.json()["error"]["code"] == "unauthorized"
    async with server.http(token="not-a-token") as wrong:
        assert (await wrong.get("/v1/sessions")).status_code == 401


async def test_agents_lists_the_modes(server: LiveServer) -> None:
    async with server.http() as http:
        agents = (await http.get("/v1/agents")).json()["agents"]
    names = [a["name"] for a in agents]
    assert names[:5] == ["orchestrator", "coder", "architect", "debug", "ask"]
    coder = agents[1]
    assert "write_file" in coder["tools"]
    assert isinstance(coder["description"], str)


async def test_session_lifecycle(server: LiveServer) -> None:
    async with server.http() as http:
        created = await http.post("/v1/sessions", json={"title": "  My work  ", "agent": "ask"})
        assert created.status_code == 201
        session = created.json()
        assert session["title"] == "My work"
        assert session["current_agent"] == "ask"
        assert {"id", "created_at", "updated_at", "owner"} <= session.keys()
        path = f"/v1/sessions/{session['id']}"
        assert (await http.get(path)).json()["title"] == "My work"
        renamed = await http.patch(path, json={"title": "Renamed"})
        assert renamed.status_code == 200
        assert renamed.json()["title"] == "Renamed"
        assert (await http.get(path)).json()["title"] == "Renamed"
        for bad in ({}, {"title": ""}, {"title": 3}, {"title": "x", "owner": "bob"}):
            response = await http.patch(path, json=bad)
            assert response.status_code == 400, bad
            assert response.json()["error"]["code"] == "invalid_request"
        deleted = await http.delete(path)
        assert deleted.status_code == 204
        for method in ("GET", "DELETE"):
            assert (await http.request(method, path)).status_code == 404
        assert (await http.get(f"{path}/events")).status_code == 404
        listed = (await http.get("/v1/sessions")).json()["sessions"]
        assert session["id"] not in [s["id"] for s in listed]


async def test_create_session_bad_input(server: LiveServer) -> None:
    async with server.http() as http:
        response = await http.post(
            "/v1/sessions", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "bad_json"
        response = await http.post("/v1/sessions", json={"agent": "wizard"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "unknown_agent"
        response = await http.post("/v1/sessions", json=["a"])
        assert response.status_code == 400
        response = await http.post("/v1/sessions", json={"agent": 5})
        assert response.status_code == 400
        empty = await http.post("/v1/sessions")
        assert empty.status_code == 201
        assert empty.json()["current_agent"] == "orchestrator"


async def test_sessions_are_paginated_newest_first(server: LiveServer) -> None:
    ids = [await server.new_session(title=f"s{i}") for i in range(5)]
    await server.new_session(BOB)
    async with server.http() as http:
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = (await http.get("/v1/sessions", params=params)).json()
            seen += [s["id"] for s in page["sessions"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ids[::-1]
        assert pages == 3
        for params in ({"cursor": "garbage"}, {"limit": 0}, {"limit": "ten"}):
            response = await http.get("/v1/sessions", params=params)
            assert response.status_code == 400, params
            assert response.json()["error"]["code"] == "bad_parameter"


async def test_events_page_messages_and_approvals(server: LiveServer) -> None:
    session_id = await server.new_session()
    async with server.ws(session_id) as client:
        await client.command({"type": "user_message", "id": "m", "content": "create a.md with x"})
        await client.until_type("approval.requested")
        async with server.http() as http:
            approvals = (await http.get(f"/v1/sessions/{session_id}/approvals")).json()
            (approval,) = approvals["approvals"]
            assert approval["name"] == "write_file"
            assert approval["status"] == "pending"
            assert approval["arguments"] == {"path": "a.md", "content": "x"}
            assert isinstance(approval["rule"], str) and approval["rule"]
            await client.command(
                {
                    "type": "approval",
                    "id": "ok",
                    "call_id": approval["call_id"],
                    "decision": "approve",
                }
            )
            await drive_turn(client)
            assert (await http.get(f"/v1/sessions/{session_id}/approvals")).json() == {
                "approvals": []
            }
            url = f"/v1/sessions/{session_id}/events"
            everything = (await http.get(url, params={"limit": 1000})).json()
            assert everything["has_more"] is False
            total = len(everything["events"])
            page = (await http.get(url, params={"after": 2, "limit": 3})).json()
            assert [e["seq"] for e in page["events"]] == [3, 4, 5]
            assert (page["next_after"], page["has_more"]) == (5, True)
            history = (await http.get(f"/v1/sessions/{session_id}/messages")).json()["messages"]
    assert total == client.last_seq
    roles = [m["role"] for m in history]
    assert roles[0] == "user" and "tool" in roles and roles[-1] == "assistant"
    call = next(m for m in history if m.get("tool_calls"))
    assert call["tool_calls"][0]["function"]["name"] == "write_file"
    result = next(m for m in history if m["role"] == "tool")
    assert result["tool_call_id"] == call["tool_calls"][0]["id"]


async def test_other_principals_get_404_everywhere(server: LiveServer) -> None:
    session_id = await server.new_session(ALICE)
    base = f"/v1/sessions/{session_id}"
    async with server.http(BOB) as bob:
        for method, path in (
            ("GET", base),
            ("PATCH", base),
            ("DELETE", base),
            ("GET", f"{base}/messages"),
            ("GET", f"{base}/events"),
            ("GET", f"{base}/approvals"),
        ):
            response = await bob.request(method, path, json={"title": "mine"})
            assert response.status_code == 404, (method, path)
            assert response.json()["error"]["code"] == "not_found"
        assert (await bob.get("/v1/sessions")).json()["sessions"] == []
    async with server.http(ALICE) as alice:
        assert (await alice.get(base)).status_code == 200


async def test_unknown_routes_and_methods_are_json_errors(server: LiveServer) -> None:
    async with server.http() as http:
        response = await http.get("/v2/nothing")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        response = await http.put("/v1/sessions")
        assert response.status_code == 405
        assert response.json()["error"]["code"] == "method_not_allowed"


async def test_metrics_expose_runtime_and_server_counters(server: LiveServer) -> None:
    session_id = await server.new_session()
    async with server.ws(session_id) as client:
        await client.command({"type": "user_message", "id": "m", "content": "explain x"})
        await client.until_type("turn.ended")
        async with server.http() as http:
            response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "agent_runtime_turns_started_total" in text
    assert "agent_runtime_ws_connections 1.0" in text
    assert 'agent_runtime_commands_total{status="accepted",transport="ws"} 1.0' in text
    assert "agent_runtime_internal_errors_total 0.0" in text
    assert 'agent_runtime_turns_ended_total{reason="completed"} 1.0' in text
    assert "agent_runtime_active_sessions 0.0" in text
    assert "agent_runtime_active_turns 0.0" in text
    assert "agent_runtime_live_sessions 1.0" in text  # idle, not yet past the TTL
    assert "agent_runtime_session_evictions_total 0.0" in text
    assert "agent_runtime_store_degraded 0.0" in text
    counts = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith(
            ("agent_runtime_store_batches_total", "agent_runtime_store_appends_total")
        )
    }
    batches, appends = (
        counts["agent_runtime_store_batches_total"],
        counts["agent_runtime_store_appends_total"],
    )
    assert 1 <= batches <= appends
    assert 'agent_runtime_llm_first_token_seconds_count{provider="scripted"} 1.0' in text
    events = [line for line in text.splitlines() if line.startswith("agent_runtime_events_total ")]
    assert events and float(events[0].split()[1]) > 5
    completion = 'agent_runtime_llm_tokens_total{kind="completion"}'
    assert any(line.startswith(completion) for line in text.splitlines())


async def test_sessions_per_principal_limit(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(limits=small_limits(sessions_per_principal=2)))
    await server.new_session()
    await server.new_session()
    async with server.http() as http:
        response = await http.post("/v1/sessions")
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "too_many_sessions"
    await server.new_session(BOB)


async def test_models_lists_the_servers_the_agents_and_the_tables_models(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    modes = tmp_path / "modes.toml"
    modes.write_text('[modes.debug]\nmodel = "deep"\n[modes.ask]\nmodel = "big"\n')
    tables = {
        "scripted": SCRIPTED_LIMITS,
        "big": ModelLimits(200_000, 8_000),
        "small": ModelLimits(),
    }
    server = await start_server(nursery, make_config(modes=modes, models=ModelCatalog(tables)))
    async with server.http() as http:
        listed = (await http.get("/v1/models")).json()
    assert listed["default"] == "scripted"
    assert [m["name"] for m in listed["models"]] == ["scripted", "deep", "big", "small"]
    scripted, deep, big, _ = listed["models"]
    assert (scripted["context_window"], scripted["max_output_tokens"]) == (4_096, 512)
    assert deep["context_window"] == ModelLimits().context_window  # no table: the default's
    assert (big["context_window"], big["max_output_tokens"]) == (200_000, 8_000)


async def test_models_offers_the_built_in_scripted_table_only_as_the_servers_model(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery, make_config(model="gpt-4.1"))
    async with server.http() as http:
        listed = (await http.get("/v1/models")).json()
        assert (
            await http.get("/v1/models", headers={"Authorization": "Bearer x"})
        ).status_code == 401
    assert listed["default"] == "gpt-4.1"
    assert [m["name"] for m in listed["models"]] == ["gpt-4.1"]
