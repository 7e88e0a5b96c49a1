"""Engine benchmark: fixed workloads, figures as ratios against baselines measured in the same run.

The workload is the paper's game, guess 2/3 of the average, with rule-based agents: level-k
(k = 0..3) and adaptive, a fifth each. Two baselines play the same game with the same rules in
this one process, as fast as each way honestly can:

- the plain loop: one minimal object per agent (`__slots__`, a `decide` method, Python's own
  `random`), a list comprehension over them per round, and the mean and target from their
  answers: what one writes without a framework;
- numpy: the whole population as arrays, each round a few vectorised operations.

Engine and baseline rounds alternate in blocks (each plays a few rounds back to back, as a run
does), so all see the same machine. The engine's round includes
everything a run records of it (mean, median, deviation, histogram, winners); the baselines
compute only the mean and target the next round needs.

Targets (issue 15): a round of 1,000,000 agents <= 0.1 x the plain loop, of 100,000 <= 0.2 x;
a round's fixed cost (10,000 agents) <= 5 ms; populating 1,000,000 agents <= 2 s; a host's memory
<= 200 bytes per agent, profile included; 10,000,000 agents in one run: populate <= 20 s, a round
<= 1 s, every host's RSS together <= 3 GB. Also: the efficiency probe (every agent waits 1 s) at
100,000 agents, against a bare event loop.

Usage: python bench/engine.py [--sizes 10000 100000 1000000] [--huge 10000000] [--probe 100000]
                              [--memory 1000000] [--rounds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import ray
import uvloop

from agents.cluster import RayCluster
from agents.host import RemoteAgentHost
from agents.simulation import Simulation
from agents.spec import RunSpec

RESULTS = Path(__file__).parent / "results"
RATIO = 2 / 3
MAX_VALUE = 100
RATE = 0.5  # adaptive's default

ATTRIBUTES = {
    "gender": {"female": 50, "male": 50},
    "age": {"18-29": 22, "30-44": 28, "45-64": 32, "65+": 18},
    "education": {"high school": 40, "bachelor's degree": 35, "master's degree": 18, "doctorate": 7},
    "occupation": {"teacher": 20, "engineer": 20, "nurse": 20, "student": 20, "artist": 20},
}
MIX = [
    *({"kind": "level_k", "share": 20, "params": {"k": k}} for k in range(4)),
    {"kind": "adaptive", "share": 20},
]


def spec(total: int, rounds: int, kinds: list[dict[str, Any]] = MIX) -> RunSpec:
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


class LevelK:
    __slots__ = ("answer",)

    def __init__(self, k: int) -> None:
        self.answer = round(MAX_VALUE / 2 * RATIO**k) if k else None

    def decide(self, target: float | None) -> int:
        return random.randint(0, MAX_VALUE) if self.answer is None else self.answer


class Adaptive:
    __slots__ = ("answer",)

    def __init__(self) -> None:
        self.answer: int | None = None

    def decide(self, target: float | None) -> int:
        if self.answer is None or target is None:
            self.answer = random.randint(0, MAX_VALUE)
        else:
            self.answer = round(self.answer + RATE * (target - self.answer))
        return self.answer


class PlainLoop:
    """The plain loop baseline: minimal objects, one call each per round."""

    def __init__(self, total: int) -> None:
        random.seed(7)
        fifth = total // 5
        self.agents: list[LevelK | Adaptive] = [LevelK(k) for k in range(4) for _ in range(fifth)]
        self.agents += [Adaptive() for _ in range(total - len(self.agents))]
        random.shuffle(self.agents)
        self.target: float | None = None

    def round(self) -> float:
        started = time.perf_counter()
        target = self.target
        answers = [agent.decide(target) for agent in self.agents]
        self.target = RATIO * sum(answers) / len(answers)
        return time.perf_counter() - started


class NumPy:
    """The numpy baseline: the population as arrays, a round as a few vectorised operations."""

    def __init__(self, total: int) -> None:
        self.rng = np.random.default_rng(7)
        kinds = np.arange(total) % 5
        self.rng.shuffle(kinds)
        self.fixed = np.rint(MAX_VALUE / 2 * RATIO ** kinds.astype(np.float64)).astype(np.int64)
        self.level0 = kinds == 0
        self.adaptive = kinds == 4
        self.answers = np.zeros(total, dtype=np.int64)
        self.target: float | None = None

    def round(self) -> float:
        started = time.perf_counter()
        answers = self.fixed.copy()
        answers[self.level0] = self.rng.integers(0, MAX_VALUE + 1, int(self.level0.sum()))
        if self.target is None:
            moved = self.rng.integers(0, MAX_VALUE + 1, int(self.adaptive.sum()))
        else:
            last = self.answers[self.adaptive]
            moved = np.rint(last + RATE * (self.target - last)).astype(np.int64)
        answers[self.adaptive] = moved
        self.answers = answers
        self.target = RATIO * float(answers.mean())
        return time.perf_counter() - started


async def game(total: int, blocks: int, block: int) -> dict[str, Any]:
    """Engine rounds against both baselines' rounds, in alternating blocks of `block` rounds:
    each plays rounds back to back, as a run does, and all three see the same machine."""
    run = spec(total, blocks * block)
    started = time.perf_counter()
    async with Simulation(run) as sim:
        populate = time.perf_counter() - started
        plain, vector = PlainLoop(total), NumPy(total)
        engine_s: list[float] = []
        plain_s: list[float] = []
        numpy_s: list[float] = []
        for _ in range(blocks):
            for _ in range(block):
                engine_s.append((await sim.step()).time)
            plain_s += [plain.round() for _ in range(block)]
            numpy_s += [vector.round() for _ in range(block)]
        hosts = await sim.host_stats()
    # Round 1 starts the hosts' draws and caches; the steady rounds are what a run is made of.
    steady = slice(1, None) if len(engine_s) > 1 else slice(None)
    engine, loop, vectorised = (statistics.median(t[steady]) for t in (engine_s, plain_s, numpy_s))
    return {
        "agents": total,
        "hosts": len(hosts),
        "populate_s": populate,
        "engine_round_s": engine_s,
        "plain_loop_round_s": plain_s,
        "numpy_round_s": numpy_s,
        "engine_median_s": engine,
        "plain_loop_median_s": loop,
        "numpy_median_s": vectorised,
        "ratio_to_plain_loop": engine / loop,
        "ratio_to_numpy": engine / vectorised,
        "hosts_rss_bytes": sum(h.rss_bytes for h in hosts),
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
    """RSS of one host before and after it builds `total` agents and plays a round."""
    run = spec(total, 1)
    host = RemoteAgentHost.remote(0, 60.0)
    empty = (await host.stats.remote()).rss_bytes
    started = time.perf_counter()
    full = (await host.populate.remote(run.population, run.seed, range(total))).rss_bytes
    populate = time.perf_counter() - started
    await host.step.remote(1, dict(Simulation(run).scenario.observe(1).public), {})
    stepped = (await host.stats.remote()).rss_bytes
    ray.kill(host)
    return {
        "agents": total,
        "empty_rss": empty,
        "populated_rss": full,
        "after_round_rss": stepped,
        "host_populate_s": populate,
        "bytes_per_agent": (max(full, stepped) - empty) / total,
    }


def report(result: dict[str, Any], target: float | None) -> None:
    aim = f" (target <= {target})" if target is not None else ""
    ms = {k: result[f"{k}_median_s"] * 1e3 for k in ("engine", "plain_loop", "numpy")}
    print(
        f"guess   {result['agents']:>10,} agents on {result['hosts']} hosts: round {ms['engine']:,.1f} ms"
        f" = {result['ratio_to_plain_loop']:.3f} x the plain loop{aim},"
        f" {result['ratio_to_numpy']:.2f} x numpy (plain loop {ms['plain_loop']:,.1f} ms,"
        f" numpy {ms['numpy']:,.1f} ms); populate {result['populate_s']:.2f} s"
    )


async def main(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"game": [], "machine": {"cpus": ray.cluster_resources().get("CPU")}}
    targets = {100_000: 0.2, 1_000_000: 0.1}
    for total in args.sizes:
        # Small runs play more rounds, which cost little: their median is of steady rounds, not of
        # the first few (caches and connections warming up weigh on a round of a few ms).
        result = await game(total, args.rounds, 5 if total <= 100_000 else 2)
        figures["game"].append(result)
        report(result, targets.get(total))
        if total == 10_000:
            print(f"        fixed cost of a round: {result['engine_median_s'] * 1e3:.1f} ms (target <= 5 ms)")
        if total == 1_000_000:
            print(f"        populating {total:,} agents: {result['populate_s']:.2f} s (target <= 2 s)")
    if args.huge:
        figures["huge"] = huge = await game(args.huge, 3, 1)
        report(huge, None)
        print(
            f"        {args.huge:,} agents: populate {huge['populate_s']:.1f} s (target <= 20 s), "
            f"round {huge['engine_median_s']:.2f} s (target <= 1 s), "
            f"hosts' RSS {huge['hosts_rss_bytes'] / 1e9:.2f} GB (target <= 3 GB)"
        )
    figures["probe"] = pr = await probe(args.probe, 2)
    print(
        f"probe   {args.probe:>10,} agents waiting 1 s each: round time {pr['median_round_s']:.2f} s "
        f"(a bare event loop needs {pr['bare_asyncio_s']:.2f} s for one host's "
        f"{pr['agents_per_host']:,} sleeping tasks)"
    )
    figures["memory"] = mem = await memory(args.memory)
    print(
        f"memory  {args.memory:>10,} agents on one host: {mem['bytes_per_agent']:.0f} bytes per agent "
        f"(target <= 200), built in {mem['host_populate_s']:.2f} s"
    )
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--huge", type=int, default=10_000_000, help="0 to skip")
    parser.add_argument("--probe", type=int, default=100_000)
    parser.add_argument("--memory", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=6, help="blocks of rounds per size")
    args = parser.parse_args()
    with RayCluster():
        figures = asyncio.run(main(args))
    figures["when"] = datetime.now(UTC).isoformat(timespec="seconds")
    figures["machine"] |= {"python": platform.python_version(), "platform": platform.platform()}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"engine-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(figures, indent=1))
    print(f"written to {path}")
