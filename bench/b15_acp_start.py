"""B15 the ACP adapter's start-up: how long an editor waits for its first answer.

Run: ``python -m bench.b15_acp_start [--runs 7] [--baseline DIR]``.

An editor (and acpx, for every new queue owner) spawns ``agent-runtime acp``
and sends ``initialize``; nothing else can happen until it is answered. Each run
spawns ``python -m server acp --db FILE`` (a fresh SQLite file, scripted model,
or ``--llm openai`` with an unreachable URL: nothing is sent before a prompt)
and times, from the spawn: the ``initialize`` answer, then ``session/new``'s.
The adapter's CPU and peak RSS are read from ``/proc`` once ``initialize`` is
answered. Each checkout also runs once under ``-X importtime`` to count the
modules it imports and their import time.

``--baseline DIR`` is another checkout (e.g. ``git worktree add /tmp/base
<commit>``): both run in turn, A B A B, so the ratio is of the same moments.
Byte-code caching is on for the children (``PYTHONDONTWRITEBYTECODE`` removed),
as in an installed package; one unmeasured warm-up run per checkout writes it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs
import trio

from sessions import JSONObject, dumps

from ._common import (
    REPO,
    STEP,
    JsonLines,
    cpu_seconds,
    end_stdio_child,
    median,
    note,
    peak_rss_kib,
    print_header,
)

PROVIDERS = {
    "scripted": [],
    "openai": ["--llm", "openai", "--llm-url", "http://127.0.0.1:9/v1"],
}


@attrs.frozen
class Started:
    initialize: float  # seconds from the spawn
    session_new: float  # seconds from the spawn
    cpu: float  # the adapter's seconds when initialize was answered
    peak_kib: int


def child_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(root)
    return env


async def start_once(root: Path, workdir: Path, provider: str) -> Started:
    db = workdir / f"b15-{time.monotonic_ns()}.db"
    command = [sys.executable, "-m", "server", "acp", "--db", str(db), *PROVIDERS[provider]]
    with (workdir / "stderr.log").open("ab") as stderr:
        spawned = time.perf_counter()
        process = await trio.lowlevel.open_process(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=root,
            env=child_env(root),
        )
    assert process.stdin is not None and process.stdout is not None
    lines = JsonLines(process.stdout)

    async def call(request_id: int, method: str, params: JSONObject) -> float:
        message: JSONObject = {"jsonrpc": "2.0", "id": request_id, "method": method}
        message["params"] = params
        assert process.stdin is not None
        await process.stdin.send_all(dumps(message).encode() + b"\n")
        with trio.fail_after(STEP):
            while True:
                got, _ = await lines.next()
                if got.get("id") == request_id and "method" not in got:
                    assert "result" in got, got
                    return time.perf_counter() - spawned

    try:
        initialize = await call(1, "initialize", {"protocolVersion": 1, "clientCapabilities": {}})
        cpu, peak = cpu_seconds(process.pid), peak_rss_kib(process.pid)
        new = await call(2, "session/new", {"cwd": str(workdir), "mcpServers": []})
    finally:
        await end_stdio_child(process)
    return Started(initialize, new, cpu, peak)


def import_profile(root: Path) -> tuple[int, float]:
    """Modules ``python -m server acp`` imports before it reads stdin, and their seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "server", "acp", "--db", f"{tmp}/x.db"],
            input=b"",
            capture_output=True,
            cwd=root,
            env=child_env(root),
            check=True,
        )
    # "import time: <self us> | <cumulative us> | <module>", after one header line
    self_us = [
        int(m[1]) for m in re.finditer(r"^import time:\s+(\d+) \|", done.stderr.decode(), re.M)
    ]
    return len(self_us), sum(self_us) / 1e6


async def main(runs: int, baseline: Path | None) -> None:
    print_header(
        "B15 the ACP adapter's start-up (spawn -> initialize)", "bench.b15_acp_start", runs
    )
    roots = {"this checkout": REPO}
    if baseline is not None:
        roots["baseline"] = baseline
    results: dict[tuple[str, str], list[Started]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for root in roots.values():
            for provider in PROVIDERS:
                await start_once(root, workdir, provider)  # warm-up: writes the byte-code
        for number in range(runs):
            for provider in PROVIDERS:
                names = list(roots) if number % 2 == 0 else list(roots)[::-1]
                for name in names:
                    run = await start_once(roots[name], workdir, provider)
                    results.setdefault((name, provider), []).append(run)
                    note(
                        f"run {number + 1} {name} {provider}: initialize "
                        f"{run.initialize * 1e3:.0f} ms, "
                        f"session/new {run.session_new * 1e3:.0f} ms, "
                        f"{run.cpu * 1e3:.0f} ms CPU, peak {run.peak_kib / 1024:.1f} MiB"
                    )
    print("| checkout | provider | initialize ms | session/new ms | CPU ms | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|")
    for (name, provider), rs in results.items():
        print(
            f"| {name} | {provider} | {median([r.initialize for r in rs]) * 1e3:.0f} "
            f"| {median([r.session_new for r in rs]) * 1e3:.0f} "
            f"| {median([r.cpu for r in rs]) * 1e3:.0f} "
            f"| {median([r.peak_kib for r in rs]) / 1024:.1f} |"
        )
    if baseline is not None:
        for provider in PROVIDERS:
            mine, base = results[("this checkout", provider)], results[("baseline", provider)]
            ratios = [a.initialize / b.initialize for a, b in zip(mine, base, strict=True)]
            note(f"{provider}: initialize this/baseline, median of pairs: {median(ratios):.2f}")
    for name, root in roots.items():
        count, seconds = import_profile(root)
        note(
            f"{name}: {count} modules imported before stdin is read, "
            f"{seconds * 1e3:.0f} ms of import"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", type=Path, default=None)
    args = parser.parse_args()
    trio.run(main, args.runs, args.baseline.resolve() if args.baseline else None)
