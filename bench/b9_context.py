"""B9 long context: tokens sent per turn over a long session, with and without compaction.

Run: ``python -m bench.b9_context [--turns 500] [--runs 3]``. In-process: the
in-memory store and the scripted model (its declared window: 4,096 tokens, 512
kept for output; prompt tokens estimated from characters, as the runtime does).
Each turn sends ``remember fact N is valueN.`` and ~170 more words, and the model
answers with a few sentences. ``without`` sets ``compact_at`` beyond reach, so
the whole history is sent on every call, as before compaction existed.

Reports the prompt tokens of the turn's call at turns 50/100/250/500, the turns
that paid for a compaction, and the CPU and wall time of one compaction's summary
call (the scripted model: no network; medians over all compactions of the run).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from agents import Policy, RuntimeConfig, ScriptedModel, builtin_modes, open_supervisor
from agents._core._model import ModelDelta, ModelRequest
from sessions import open_memory_store

from ._common import median

PADDING = "Some context that makes the message long. " * 24
MARKS = (50, 100, 250, 500)


@attrs.define
class Timed:
    """The scripted model, timing its compaction calls and recording chat prompt sizes."""

    inner: ScriptedModel = attrs.field(factory=ScriptedModel)
    compactions: list[tuple[float, float]] = attrs.field(factory=list)  # (cpu, wall)

    @property
    def name(self) -> str:
        return "scripted"

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[ModelDelta]]:
        cpu, wall = time.process_time(), time.perf_counter()
        async with self.inner.stream(request) as deltas:
            yield deltas
        if request.purpose == "compact":
            self.compactions.append((time.process_time() - cpu, time.perf_counter() - wall))


async def session_run(turns: int, compact: bool) -> tuple[dict[int, int], int, float, float]:
    model = Timed()
    config = RuntimeConfig(compact_at=0.8 if compact else 1e9)
    async with (
        open_memory_store() as store,
        open_supervisor(
            store, model, modes=builtin_modes(), policy=Policy(), config=config
        ) as supervisor,
    ):
        session = await supervisor.create_session("bench", agent="coder")
        prompts: dict[int, int] = {}
        for n in range(1, turns + 1):
            last = (await store.read_events(session.id))[-1].seq if n > 1 else 0
            await supervisor.submit(
                session,
                {
                    "type": "user_message",
                    "id": f"m{n}",
                    "content": f"remember fact {n} is value{n}. {PADDING}",
                },
            )
            async with store.subscribe(session.id, after=last) as sub:
                async for ev in sub:
                    if ev.type == "usage" and ev.data.get("purpose") == "chat":
                        prompts[n] = int(str(ev.data["prompt_tokens"]))
                    if ev.type == "turn.ended":
                        break
        cpu = median([c for c, _ in model.compactions]) if model.compactions else 0.0
        wall = median([w for _, w in model.compactions]) if model.compactions else 0.0
        return prompts, len(model.compactions), cpu, wall


async def main(turns: int, runs: int) -> None:
    print(f"B9 long context: {turns} turns, scripted model (window 4,096, 512 for output)")
    print(
        "| | turn 50 | turn 100 | turn 250 | turn 500 | max | compactions (share of turns) "
        "| CPU ms / compaction | wall ms / compaction |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for compact in (False, True):
        results = [await session_run(turns, compact) for _ in range(runs)]
        prompts, count, _, _ = results[0]
        marks = " | ".join(f"{prompts.get(m, 0):,}" for m in MARKS if m <= turns)
        cpu = median([r[2] for r in results]) * 1000
        wall = median([r[3] for r in results]) * 1000
        label = "with compaction" if compact else "without"
        print(
            f"| {label} | {marks} | {max(prompts.values()):,} | {count} ({count / turns:.1%}) "
            f"| {cpu:.2f} | {wall:.2f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    trio.run(main, args.turns, args.runs)
