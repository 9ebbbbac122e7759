"""B6 session creation with a per-principal cap: the atomic count vs the old listing check.

Run: ``python -m bench.b6_session_create`` (about half a minute). For each fill
level (a principal already owning 10 and 10,000 live sessions) it times 300
sequential creations on a fresh SQLite store, 3 runs, and prints the medians:

- ``atomic``: the store's check inside the insert's transaction
  (``Append.max_live_sessions``, a maintained per-owner count: O(1));
- ``listing`` (baseline, the check before this change): read the owner's
  sessions up to the cap + 1 (``list_sessions``), then insert; O(cap) rows per
  creation and not atomic.

Both use the same store and the same cap (the fill level + 1,000).
"""

from __future__ import annotations

import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

from sessions import Append, GroupCommitStore, Session, new_id, now, open_sqlite_store

CREATES = 300
RUNS = 3


def _session(owner: str) -> Session:
    t = now()
    return Session(new_id("ses"), owner, "bench", t, t, "orchestrator")


async def _fill(store: GroupCommitStore, owner: str, count: int) -> None:
    async def one() -> None:
        session = _session(owner)
        await store.append(Append(session.id, session=session))

    for start in range(0, count, 500):
        async with trio.open_nursery() as nursery:
            for _ in range(min(500, count - start)):
                nursery.start_soon(one)


async def _rate(fill: int, mode: str) -> float:
    cap = fill + 1000
    with tempfile.TemporaryDirectory() as tmp:
        async with open_sqlite_store(Path(tmp) / "b6.db") as store:
            await _fill(store, "alice", fill)
            started = time.perf_counter()
            for _ in range(CREATES):
                session = _session("alice")
                if mode == "listing":
                    owned = await store.list_sessions("alice", limit=cap + 1)
                    assert len(owned) < cap
                    await store.append(Append(session.id, session=session))
                else:
                    await store.append(Append(session.id, session=session, max_live_sessions=cap))
            return CREATES / (time.perf_counter() - started)


async def main() -> None:
    print(f"# B6 session create, {platform.machine()}, Python {sys.version.split()[0]}")
    print("| sessions already owned | atomic (creates/s) | listing baseline | ratio |")
    print("|---:|---:|---:|---:|")
    for fill in (10, 10_000):
        atomic, listing = [], []
        for _ in range(RUNS):  # interleaved, so drift hits both alike
            atomic.append(await _rate(fill, "atomic"))
            listing.append(await _rate(fill, "listing"))
        a, b = statistics.median(atomic), statistics.median(listing)
        print(f"| {fill:,} | {a:,.0f} | {b:,.0f} | {a / b:.2f} |")


if __name__ == "__main__":
    trio.run(main)
