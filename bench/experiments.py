"""Experiment benchmark: a study of many runs, against running them one after another.

An experiment of 24 runs of 10,000 agents (3 ratios × 2 latencies × 4 replicates of the paper's
efficiency probe: every agent waits, as for a model's answer, then answers at random), driven by a
workflow worker `max_parallel` at a time and recorded in SQLite, divided by the baseline: the
same 24 runs on the engine alone, one after another (what the paper's runner does: a loop over
its configurations). Target <= 0.6.

Usage: python bench/experiments.py [--agents 10000] [--rounds 3] [--replicates 4] [--parallel 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.cluster import RayCluster
from agents.experiment import ExperimentSpec
from agents.simulation import Simulation
from backend import services
from backend.runtime import Runtime
from backend.settings import Settings
from backend.store.db import migrate
from backend.workflow.worker import Worker

RESULTS = Path(__file__).parent / "results"


def experiment(args: argparse.Namespace) -> ExperimentSpec:
    return ExperimentSpec.parse(
        {
            "name": "experiment-bench",
            "base": {
                "name": "probe",
                "scenario": {"name": "guess_two_thirds"},
                "rounds": args.rounds,
                "population": {
                    "total": args.agents,
                    "kinds": [{"kind": "probe", "share": 100, "params": {"delay": 0.5}}],
                },
                "placement": {"hosts": 2},
            },
            "vary": {
                "scenario.params.ratio": ["2/3", "1/2", "3/5"],
                "population.kinds.0.params.delay": [0.5, 1.0],
            },
            "replicates": args.replicates,
            "seed": 5,
            "max_parallel": args.parallel,
        }
    )


async def one_after_another(spec: ExperimentSpec) -> float:
    """The baseline: each planned run on the engine alone, in turn."""
    started = time.perf_counter()
    for planned in spec.plan():
        async with Simulation(planned.spec) as sim:
            async for _ in sim.rounds():
                pass
    return time.perf_counter() - started


async def as_experiment(spec: ExperimentSpec, folder: Path) -> float:
    """Seconds from queueing the experiment to its last run's end, with a worker driving it."""
    url = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    await asyncio.to_thread(migrate, url)
    settings = Settings(database_url=url, worker_id="bench", worker_runs=spec.max_parallel, poll_seconds=0.1)
    async with Runtime(settings) as rt:
        stop = asyncio.Event()
        serving = asyncio.create_task(Worker(rt).serve(stop))
        started = time.perf_counter()
        created, runs = await services.submit_experiment(rt, spec)
        while True:
            progress = await services.experiment_progress(rt, await services.get_experiment(rt, created.id))
            if progress["status"] in ("completed", "stopped", "failed"):
                break
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - started
        stop.set()
        await serving
    assert progress["status"] == "completed", progress
    assert len(runs) == spec.runs
    return elapsed


async def main(args: argparse.Namespace) -> dict[str, Any]:
    spec = experiment(args)
    baseline = await one_after_another(spec)
    with tempfile.TemporaryDirectory() as folder:
        wall = await as_experiment(spec, Path(folder))
    print(
        f"experiment/one-after-another: {wall / baseline:.2f} ({spec.runs} runs of {args.agents:,} agents, "
        f"{args.rounds} rounds, {spec.max_parallel} at a time: {wall:.1f} s as an experiment, recorded; "
        f"{baseline:.1f} s on the engine alone, one after another)"
    )
    return {
        "runs": spec.runs,
        "agents": args.agents,
        "rounds": args.rounds,
        "max_parallel": spec.max_parallel,
        "experiment_s": wall,
        "one_after_another_s": baseline,
        "ratio": wall / baseline,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replicates", type=int, default=4)
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()
    with RayCluster():
        figures = asyncio.run(main(args))
    figures["when"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"experiments-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(figures, indent=1))
    print(f"written to {path}")
