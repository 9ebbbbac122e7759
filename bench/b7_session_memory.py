"""B7 session memory: RSS after 1,000 vs 20,000 sessions touched once each.

Run: ``python -m bench.b7_session_memory [--sessions 1000,20000] [--ttl 5] [--runs 1]``
(about a minute for the defaults).

Each size runs in a fresh child process (so one size's freed memory cannot hide
the other's growth): a SQLite store in a temporary directory, the turn
supervisor with the scripted model (no server, no network), and *N* sessions,
each created, sent one message (``hello`` to the ``ask`` agent: a few sentences,
no tool call) and followed to its ``turn.ended``, 32 sessions at a time. The
child reports its RSS (``VmRSS``, after ``gc.collect()``) at three points:

- ``start``: store and supervisor open, nothing done yet;
- ``turns done``: right after the last turn ended (up to ``max_idle_sessions``
  idle sessions are still loaded);
- ``past TTL``: after waiting ``--ttl`` + 1 s, with ``session_idle_ttl = --ttl``
  (the default TTL is 60 s; a shorter one only makes the bench quicker).

The target of the live-session registry is RSS past TTL at 20,000 sessions
at most 1.25 times the figure at 1,000.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import trio

from agents import Policy, RuntimeConfig, ScriptedModel, Supervisor, builtin_modes, open_supervisor
from server._cli import tune_gc
from sessions import GroupCommitStore, open_sqlite_store

from ._common import REPO, median, note, parse_counts, print_header

CONCURRENCY = 32


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _settled_rss() -> float:
    gc.collect()
    return _rss_mib()


async def _one_session(store: GroupCommitStore, supervisor: Supervisor, n: int) -> None:
    session = await supervisor.create_session("bench", agent="ask")
    ack = await supervisor.submit(
        session, {"type": "user_message", "id": f"cmd_{n}", "content": "hello"}
    )
    assert ack.status == "accepted", ack
    async with store.subscribe(session.id) as events:
        async for event in events:
            if event.type == "turn.ended":
                assert event.data["reason"] == "completed", event.data
                return


async def child(sessions: int, ttl: float) -> dict[str, float]:
    """Touch *sessions* sessions once each; RSS at the start, after, and past the TTL."""
    with tempfile.TemporaryDirectory(prefix="b7-") as tmp:
        async with open_sqlite_store(Path(tmp) / "b7.db") as store:
            config = RuntimeConfig(session_idle_ttl=ttl)
            async with open_supervisor(
                store, ScriptedModel(), modes=builtin_modes(), policy=Policy(), config=config
            ) as supervisor:
                start = _settled_rss()
                began = time.perf_counter()
                send, receive = trio.open_memory_channel[int](0)

                async def worker() -> None:
                    async for n in receive:
                        await _one_session(store, supervisor, n)

                async with trio.open_nursery() as nursery:
                    for _ in range(CONCURRENCY):
                        nursery.start_soon(worker)
                    async with send:
                        for n in range(sessions):
                            await send.send(n)
                seconds = time.perf_counter() - began
                done = _settled_rss()
                live_done = len(supervisor.sessions)
                await trio.sleep(ttl + 1)
                past = _settled_rss()
                live_past = len(supervisor.sessions)
    return {
        "start": start,
        "done": done,
        "past": past,
        "live_done": live_done,
        "live_past": live_past,
        "seconds": seconds,
    }


async def _run_child(sessions: int, ttl: float) -> dict[str, float]:
    done = await trio.run_process(
        [
            sys.executable,
            "-m",
            "bench.b7_session_memory",
            "--child",
            str(sessions),
            "--ttl",
            str(ttl),
        ],
        cwd=REPO,
        capture_stdout=True,
    )
    result: dict[str, float] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


async def main(sizes: list[int], ttl: float, runs: int) -> None:
    print_header(
        f"B7 session memory: RSS after {' vs '.join(f'{n:,}' for n in sizes)} one-turn sessions",
        "bench.b7_session_memory",
        runs,
    )
    table: dict[int, list[dict[str, float]]] = {n: [] for n in sizes}
    for number in range(runs):
        for sessions in sizes:
            result = await _run_child(sessions, ttl)
            table[sessions].append(result)
            note(
                f"run {number + 1}, {sessions:,} sessions: {result['seconds']:.1f} s; RSS "
                f"{result['start']:.1f} → {result['done']:.1f} → {result['past']:.1f} MiB; "
                f"live {result['live_done']:.0f} → {result['live_past']:.0f}"
            )
    print(
        "| sessions | RSS start MiB | RSS turns done MiB | live after turns "
        f"| RSS past TTL ({ttl:g} s) MiB | live past TTL |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    past: dict[int, float] = {}
    for sessions, results in table.items():

        def med(key: str, results: list[dict[str, float]] = results) -> float:
            return median([r[key] for r in results])

        past[sessions] = med("past")
        print(
            f"| {sessions:,} | {med('start'):.1f} | {med('done'):.1f} | {med('live_done'):.0f} "
            f"| {med('past'):.1f} | {med('live_past'):.0f} |"
        )
    low, high = min(sizes), max(sizes)
    print(f"\nRSS past TTL, {high:,} / {low:,} sessions: {past[high] / past[low]:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", default="1000,20000", help="comma-separated sizes")
    parser.add_argument("--ttl", type=float, default=5.0, help="session_idle_ttl, seconds")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child is not None:
        tune_gc()  # as `agent-runtime serve` does
        print(json.dumps(trio.run(child, options.child, options.ttl)))
    else:
        trio.run(main, parse_counts(options.sessions), options.ttl, options.runs)
