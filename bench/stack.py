"""Stack benchmark: the cost of recording everything, against the engine alone, in the same run.

A 1,000,000-agent run of the paper's game (level-k and adaptive agents, a fifth each) with every
action recorded in Postgres, driven by a workflow worker, divided by the same run on the engine
alone (target <= 1.2), medians of alternating runs; and the rate at which the recorder writes
actions (target >= 5,000,000 per second).

`--sample N` records N agents' actions (`record: {sample: N}`) in place of all of them, as a
10,000,000-agent run does (`--agents 10000000 --sample 100000`).

Usage: python bench/stack.py [--agents 1000000] [--rounds 10] [--sample N] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from agents.cluster import RayCluster
from agents.simulation import Simulation
from agents.spec import RunSpec
from backend import services
from backend.runtime import Runtime
from backend.settings import Settings
from backend.store.db import migrate
from backend.workflow.worker import Worker

RESULTS = Path(__file__).parent / "results"
MIX = [
    *({"kind": "level_k", "share": 20, "params": {"k": k}} for k in range(4)),
    {"kind": "adaptive", "share": 20},
]


def spec(agents: int, rounds: int, sample: int | None = None) -> RunSpec:
    return RunSpec.parse(
        {
            "name": f"stack-bench-{agents}",
            "scenario": {"name": "guess_two_thirds"},
            "rounds": rounds,
            "seed": 3,
            "record": "all" if sample is None else {"sample": sample},
            "population": {
                "total": agents,
                "attributes": {"gender": {"female": 50, "male": 50}},
                "kinds": MIX,
            },
        }
    )


async def fresh_database(url: str) -> str:
    """An empty `myriad_bench` database beside the one in `url`, migrated to head."""
    server = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(server)
    await conn.execute("DROP DATABASE IF EXISTS myriad_bench WITH (FORCE)")
    await conn.execute("CREATE DATABASE myriad_bench")
    await conn.close()
    bench_url = url.rsplit("/", 1)[0] + "/myriad_bench"
    await asyncio.to_thread(migrate, bench_url)
    return bench_url


async def engine_alone(run: RunSpec) -> tuple[float, float]:
    """Seconds for the run on the engine alone, and of those, to place and populate its hosts."""
    started = time.perf_counter()
    async with Simulation(run) as sim:
        placed = time.perf_counter()
        async for _ in sim.rounds():
            pass
    return time.perf_counter() - started, placed - started


async def recorded(run: RunSpec, url: str) -> tuple[float, dict[str, Any]]:
    """Seconds for a worker to drive the run, and the live state it left (the recorder's figures)."""
    async with Runtime(Settings(database_url=url, worker_id="bench")) as rt:
        queued = await services.submit(rt, run)
        worker = Worker(rt)
        claimed = await worker.claim(queued.id)
        assert claimed is not None
        started = time.perf_counter()
        status = await worker.drive(claimed)
        elapsed = time.perf_counter() - started
        state = await rt.live.state(queued.id)
    assert status == "completed", status
    return elapsed, state


async def phases(url: str) -> tuple[float, float]:
    """Seconds from the run's claim to its start (hosts placed and populated), and from its start
    to its last round's row (the rounds and their actions recorded)."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        started = "(SELECT created_at FROM events WHERE kind = 'started')"
        row = await conn.fetchrow(
            f"SELECT EXTRACT(EPOCH FROM {started} - (SELECT started_at FROM runs)),"
            f" EXTRACT(EPOCH FROM (SELECT max(created_at) FROM rounds) - {started})"
        )
    finally:
        await conn.close()
    return float(row[0]), float(row[1])


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Alternate runs on the engine alone and recorded, `--repeats` of each, and compare their
    medians: each run starts new host processes, which takes longer when Ray has none waiting."""
    run = spec(args.agents, args.rounds, args.sample)
    alone, stacked, starts, split = [], [], [], []
    for _ in range(args.repeats):
        seconds, placing = await engine_alone(run)
        alone.append(seconds)
        starts.append(placing)
        url = await fresh_database(args.postgres)
        seconds, state = await recorded(run, url)
        stacked.append(seconds)
        split.append(await phases(url))
    baseline, recorded_s = statistics.median(alone), statistics.median(stacked)
    written, writing = state["actions_written"], state["seconds_writing_actions"]
    rate = written / writing
    start_s, rounds_s = (statistics.median(p) for p in zip(*split, strict=True))
    print(
        f"stack/engine: {recorded_s / baseline:.2f} ({args.agents:,} agents, {args.rounds} rounds, "
        f"medians of {args.repeats}: {recorded_s:.2f} s recorded in Postgres, {baseline:.2f} s engine alone)"
    )
    print(f"actions written: {rate:,.0f} per second ({written:,} in {writing:.2f} s)")
    print(
        f"recorded: hosts placed {start_s:.2f} s, then every round and action recorded {rounds_s:.2f} s"
        f" later; engine alone: hosts placed {statistics.median(starts):.2f} s,"
        f" rounds {baseline - statistics.median(starts):.2f} s"
    )
    return {
        "agents": args.agents,
        "rounds": args.rounds,
        "sample": args.sample,
        "stack_s": stacked,
        "engine_s": alone,
        "engine_start_s": starts,
        "stack_phases_s": split,
        "ratio": recorded_s / baseline,
        "actions_written": written,
        "actions_per_s": rate,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--sample", type=int, help="record this many agents' actions, not all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    with RayCluster():
        figures = asyncio.run(main(args))
    figures["when"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"stack-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(figures, indent=1))
    print(f"written to {path}")
