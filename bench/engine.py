"""Engine benchmark: fixed workloads, figures as ratios against baselines measured in the same run.

1. The guess-2/3 game with level-k agents (k = 0..3, a quarter each) at 100,000 and 1,000,000
   agents: the engine's round time divided by a plain single-process Python loop running the same
   agents and the same scenario. Engine and baseline rounds alternate, so both see the same machine.
   Target: <= 0.7 at 1M on 2 cores.
2. The efficiency probe (every agent waits 1 s) at 100,000 agents: round time. Target <= 1.5 s.
3. Memory: a host's RSS per agent, profiles included. Target <= 2 KB per rule-based agent.

Usage: python bench/engine.py [--sizes 100000 1000000] [--probe 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ray
import uvloop

from agents.cluster import RayCluster
from agents.core import ActionBatch, Observation
from agents.host import RemoteAgentHost
from agents.population import Population
from agents.simulation import Simulation
from agents.spec import RunSpec

RESULTS = Path(__file__).parent / "results"

ATTRIBUTES = {
    "gender": {"female": 50, "male": 50},
    "age": {"18-29": 22, "30-44": 28, "45-64": 32, "65+": 18},
    "education": {"high school": 40, "bachelor's degree": 35, "master's degree": 18, "doctorate": 7},
    "occupation": {"teacher": 20, "engineer": 20, "nurse": 20, "student": 20, "artist": 20},
}


def spec(total: int, rounds: int, kinds: list[dict[str, Any]]) -> RunSpec:
    return RunSpec.parse(
        {
            "name": f"bench-{total}",
            "scenario": {"name": "guess_two_thirds", "params": {"ratio": "2/3"}},
            "rounds": rounds,
            "seed": 7,
            "population": {
                "total": total,
                "attributes": ATTRIBUTES,
                "background": "{name} is a {gender} {occupation} aged {age}, educated to {education} level.",
                "kinds": kinds,
            },
        }
    )


LEVEL_K = [{"kind": "level_k", "share": 25, "params": {"k": k}} for k in range(4)]


class Baseline:
    """The same agents and scenario, stepped by a plain loop in this one process."""

    def __init__(self, run: RunSpec) -> None:
        self.agents = Population(run.population, run.seed).agents(range(run.population.total))
        self.scenario = Simulation(run).scenario

    def round(self, round: int) -> float:
        started = time.perf_counter()
        observation = Observation(round, self.scenario.observe(round).public)
        payloads = [agent.decide(observation).payload for agent in self.agents]
        self.scenario.apply(round, ActionBatch(range(len(payloads)), payloads))
        return time.perf_counter() - started


async def level_k(total: int, rounds: int) -> dict[str, Any]:
    run = spec(total, rounds, LEVEL_K)
    started = time.perf_counter()
    async with Simulation(run) as sim:
        populate = time.perf_counter() - started
        baseline = Baseline(run)
        engine_times, baseline_times = [], []
        for round in range(1, rounds + 1):
            engine_times.append((await sim.step()).time)
            baseline_times.append(baseline.round(round))
        hosts = len(sim.hosts)
    ratios = [e / b for e, b in zip(engine_times, baseline_times, strict=True)]
    return {
        "agents": total,
        "hosts": hosts,
        "populate_s": populate,
        "engine_round_s": engine_times,
        "baseline_round_s": baseline_times,
        "ratio": statistics.median(ratios),
    }


async def probe(total: int, rounds: int) -> dict[str, Any]:
    run = spec(total, rounds, [{"kind": "probe", "share": 100, "params": {"delay": 1.0}}])
    async with Simulation(run) as sim:
        times = [(await sim.step()).time for _ in range(rounds)]
        per_host = -(-total // len(sim.hosts))
    floor = await asyncio.to_thread(asyncio_floor, per_host, 1.0)
    return {
        "agents": total,
        "delay_s": 1.0,
        "round_s": times,
        "median_round_s": statistics.median(times),
        "bare_asyncio_s": floor,
        "agents_per_host": per_host,
    }


def asyncio_floor(tasks: int, delay: float) -> float:
    """Seconds a bare event loop in one process takes to run `tasks` tasks that each sleep `delay`:
    the least a host can need for that many waiting agents on one core."""

    async def bare() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(asyncio.sleep(delay) for _ in range(tasks)))
        return time.perf_counter() - started

    return uvloop.run(bare())


async def memory(total: int) -> dict[str, Any]:
    """RSS of one host before and after it builds `total` level-k agents."""
    run = spec(total, 1, LEVEL_K)
    host = RemoteAgentHost.remote(0, 60.0)
    empty = (await host.stats.remote()).rss_bytes
    full = (await host.populate.remote(run.population, run.seed, range(total))).rss_bytes
    await host.step.remote(1, dict(Simulation(run).scenario.observe(1).public), {})
    stepped = (await host.stats.remote()).rss_bytes
    ray.kill(host)
    return {
        "agents": total,
        "empty_rss": empty,
        "populated_rss": full,
        "after_round_rss": stepped,
        "bytes_per_agent": (max(full, stepped) - empty) / total,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"level_k": [], "machine": {"cpus": ray.cluster_resources().get("CPU")}}
    for total in args.sizes:
        result = await level_k(total, args.rounds)
        figures["level_k"].append(result)
        engine, plain = (statistics.median(result[k]) for k in ("engine_round_s", "baseline_round_s"))
        print(
            f"level-k {total:>9,} agents on {result['hosts']} hosts: engine/baseline round time = "
            f"{result['ratio']:.2f} (engine {engine:.2f} s, plain loop {plain:.2f} s; "
            f"populate {result['populate_s']:.1f} s)"
        )
    figures["probe"] = pr = await probe(args.probe, 2)
    print(
        f"probe   {args.probe:>9,} agents waiting 1 s each: round time {pr['median_round_s']:.2f} s "
        f"(a bare event loop needs {pr['bare_asyncio_s']:.2f} s for one host's "
        f"{pr['agents_per_host']:,} sleeping tasks)"
    )
    figures["memory"] = memory_result = await memory(args.memory)
    per_agent = memory_result["bytes_per_agent"]
    print(f"memory  {args.memory:>9,} agents on one host: {per_agent:.0f} bytes per agent")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--probe", type=int, default=100_000)
    parser.add_argument("--memory", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with RayCluster():
        figures = asyncio.run(main(args))
    figures["when"] = datetime.now(UTC).isoformat(timespec="seconds")
    figures["machine"] |= {"python": platform.python_version(), "platform": platform.platform()}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"engine-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(figures, indent=1))
    print(f"written to {path}")
