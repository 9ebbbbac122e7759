"""Disk full, for real: the database on a small tmpfs that the test fills up and frees.

The server must stay up: commands get ``503 storage_unavailable`` with
``Retry-After`` (WebSocket: a retryable ``error`` frame on a connection that
stays open), ``/health`` and ``/metrics`` report the degraded store, and when
space returns, writes resume without a restart. Needs root to mount the tmpfs
(CI runs as root); skipped elsewhere.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.server.helpers import LiveServer, ended, make_config, start_server


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of *disk* with one file."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        chunk = b"\0" * 65536
        try:
            while True:
                out.write(chunk)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


async def test_a_full_disk_degrades_the_server_and_space_returning_heals_it(
    nursery: trio.Nursery, small_disk: Path
) -> None:
    server: LiveServer = await start_server(nursery, make_config(db=str(small_disk / "s.db")))
    session_id = await server.new_session()
    big = "word " * 60_000  # 300 KB: needs new database pages
    async with server.http() as http, server.ws(session_id) as client:
        filler = await trio.to_thread.run_sync(fill, small_disk)
        refused = await http.post(
            f"/v1/sessions/{session_id}/commands",
            json={"type": "user_message", "id": "m1", "content": big},
        )
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "storage_unavailable"
        assert refused.json()["error"]["retryable"] is True
        assert refused.headers["Retry-After"].isdigit()
        health = await http.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        metrics = (await http.get("/metrics")).text
        assert "agent_runtime_store_degraded 1.0" in metrics
        # Over WebSocket: a retryable error frame, and the connection stays open.
        await client.send({"type": "user_message", "id": "m2", "content": big})
        error = await client.error()
        assert (error["code"], error["retryable"], error["id"]) == (
            "storage_unavailable",
            True,
            "m2",
        )
        # Space returns: writes resume without a restart.
        await trio.Path(filler).unlink()
        ack = await client.command({"type": "user_message", "id": "m3", "content": "hello"})
        assert ack["status"] == "accepted", ack
        events = await client.until(ended)
        assert events[-1]["reason"] == "completed"
        health = await http.get("/health")
        assert health.status_code == 200
        assert "agent_runtime_store_degraded 0.0" in (await http.get("/metrics")).text
        # The refused commands left nothing behind; the log is contiguous.
        page = (await http.get(f"/v1/sessions/{session_id}/events", params={"limit": 1000})).json()
        seqs = [e["seq"] for e in page["events"]]
        assert seqs == list(range(1, len(seqs) + 1))
        assert big not in str(page)
