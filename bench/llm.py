"""LLM benchmark: N language-model agents against a server that answers C calls at once in L seconds.

The stand-in OpenAI-compatible server (`myriad llm-stub`) runs in its own process with latency L
and capacity C (it answers 429 beyond C calls in flight). N `llm_guess` agents (one call each per
round: direct answers, no extraction) play the guess-2/3 game on H hosts, each host's endpoint pool
allowed C / H calls in flight, so together they keep the server exactly full. No run can do a round
faster than N·L/C seconds; the figure is the median round time divided by that ideal.
Target: <= 1.1 at N = 10,000 (L = 1 s, C = 1,000: ideal 10 s). A smaller run (N = 1,000 by default,
same L and C) is measured in the same session as a baseline. Each round's valid answers (cnt),
failures, calls and tokens are reported, with the CPU seconds the hosts, the server and this
driver spent, so one sees where the time goes. Since every agent starts at once, calls go out in
waves of C: "excess per wave" is what each wave takes beyond L, (round - ideal) / (N / C).

The server also reports the share of prompt tokens that lie in a prefix shared with an earlier
prompt (what a server's prefix cache, such as vLLM's, could have served); target >= 0.8.

Archetypes: M `llm_guess` agents (1,000,000 by default) grouped into A archetypes (1,000: three
attributes of 10 categories) answer through S samples each (5): A·S calls a round instead of M,
so the ideal round is A·S·L/C (5 s at L = 1 s, C = 1,000); target <= 1.2. Archetypes are per
host, so H hosts ask H·A·S calls: the run uses one host unless told otherwise
(`--archetype-hosts`), and reports the calls made against the agents.

Usage: python bench/llm.py [--agents 10000] [--baseline 1000] [--latency 1.0] [--capacity 1000]
                           [--hosts 2] [--rounds 3] [--archetype-agents 1000000]
                           [--archetypes 1000] [--samples 5] [--archetype-hosts 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import psutil

from agents.cluster import RayCluster
from agents.simulation import Simulation
from agents.spec import RunSpec

RESULTS = Path(__file__).parent / "results"
MYRIAD = Path(sys.executable).with_name("myriad")
TARGET = 1.1
SHARED_TARGET = 0.8  # of prompt tokens in a prefix shared with an earlier prompt
ARCHETYPE_TARGET = 1.2

ATTRIBUTES: dict[str, dict[str, float]] = {
    "gender": {"female": 50, "male": 50},
    "age": {"18-29": 22, "30-44": 28, "45-64": 32, "65+": 18},
    "education": {"high school": 40, "bachelor's degree": 35, "master's degree": 18, "doctorate": 7},
}


# -- the stand-in server, in its own process --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_stub(port: int, latency: float, capacity: int, log: IO[str]) -> subprocess.Popen[str]:
    """The server in its own process (and process group), printing to `log`: a file, not a pipe,
    which a chatty server could fill and block on."""
    command = [str(MYRIAD), "llm-stub", "--port", str(port)]
    command += ["--latency", str(latency), "--capacity", str(capacity)]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_answering(url: str, stub: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stub.poll() is not None:
            raise SystemExit(f"the stand-in server exited with {stub.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the stand-in server did not answer within {timeout:.0f} s")


def stub_stats(url: str) -> dict[str, Any]:
    """What the server has served so far (`GET /stats`)."""
    with urllib.request.urlopen(f"{url.removesuffix('/v1')}/stats", timeout=10) as response:
        stats: dict[str, Any] = json.load(response)
        return stats


def shared_share(before: dict[str, Any], after: dict[str, Any]) -> float:
    """The shared-prefix share of the prompt tokens the server was sent between two readings."""
    prompt = after["prompt_tokens"] - before["prompt_tokens"]
    return (after["shared_tokens"] - before["shared_tokens"]) / prompt if prompt else 0.0


def stop_stub(stub: subprocess.Popen[str]) -> None:
    """SIGTERM (the server prints what it served and exits), then SIGKILL if it lingers."""
    stub.terminate()
    try:
        stub.wait(timeout=15)
    except subprocess.TimeoutExpired:
        stub.kill()
        stub.wait()


# -- the run ----------------------------------------------------------------------------------------


def archetype_attributes(archetypes: int) -> dict[str, dict[str, float]]:
    """Attributes whose categories (equal shares) multiply to `archetypes`: three of n each when
    `archetypes` is a cube n³, else one of `archetypes` categories."""
    side = round(archetypes ** (1 / 3))
    sizes = [side] * 3 if side**3 == archetypes else [archetypes]
    return {f"trait{i}": {f"t{i}-{c}": 100 / size for c in range(size)} for i, size in enumerate(sizes)}


def spec(
    agents: int, rounds: int, hosts: int, url: str, capacity: int, archetypes: int = 0, samples: int = 5
) -> RunSpec:
    """The benchmark's run: agents asking a call each, or with `archetypes` through `samples`
    calls per archetype."""
    per_host = capacity // hosts
    attributes: dict[str, dict[str, float]] = ATTRIBUTES
    params: dict[str, Any] = {}
    background = "{name} is a {gender} aged {age}, educated to {education} level."
    if archetypes:
        attributes = archetype_attributes(archetypes)
        params = {"archetypes": {"by": list(attributes), "samples": samples}}
        background = "{name}."
    return RunSpec.parse(
        {
            "name": f"llm-bench-{agents}",
            "scenario": {"name": "guess_two_thirds", "params": {"ratio": "2/3"}},
            "rounds": rounds,
            # Each size its own agents, as two real runs would have: the baseline's prompts, the
            # same word for word, would flatter the next run's shared-prefix share.
            "seed": 11 + agents,
            "record": "none",
            "placement": {"hosts": hosts, "agent_timeout": 300},
            "population": {
                "total": agents,
                "attributes": attributes,
                "background": background,
                "kinds": [
                    {
                        "kind": "llm_guess",
                        "share": 100,
                        "params": {
                            "model": "stub",
                            "prompt": "direct",
                            "extract": False,
                            "persona": True,
                            "turn_timeout": 300,
                            **params,
                        },
                    }
                ],
            },
            "llm": {
                "models": {
                    "stub": {
                        "endpoints": [{"url": url, "concurrency": per_host}],
                        "timeout": 30,
                        "retries": 4,
                    }
                }
            },
        }
    )


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def measure(
    agents: int, args: argparse.Namespace, url: str, stub_pid: int, archetypes: int = 0
) -> dict[str, Any]:
    hosts = args.archetype_hosts if archetypes else args.hosts
    run = spec(agents, args.rounds, hosts, url, args.capacity, archetypes, args.samples)
    calls = archetypes * args.samples if archetypes else agents  # a round's, at best
    ideal = calls * args.latency / args.capacity
    started = time.perf_counter()
    async with Simulation(run) as sim:
        populate = time.perf_counter() - started
        host_pids = [s.pid for s in await sim.host_stats()]
        driver = psutil.Process()
        rounds = []
        first = served_before = await asyncio.to_thread(stub_stats, url)
        for _ in range(args.rounds):
            before = (cpu_seconds(host_pids), cpu_seconds([stub_pid]), sum(driver.cpu_times()[:2]))
            result = await sim.step()
            after = (cpu_seconds(host_pids), cpu_seconds([stub_pid]), sum(driver.cpu_times()[:2]))
            served_after = await asyncio.to_thread(stub_stats, url)
            shared = shared_share(served_before, served_after)
            served_before = served_after
            hosts_cpu, stub_cpu, driver_cpu = (a - b for a, b in zip(after, before, strict=True))
            usage = result.usage.get("stub", {})
            rounds.append(
                {
                    "round": result.round,
                    "time_s": result.time,
                    "ratio": result.time / ideal,
                    "cnt": result.stats.get("cnt"),
                    "failures": result.failures,
                    "usage": usage,
                    "shared_prefix": shared,
                    "cpu_s": {"hosts": hosts_cpu, "stub": stub_cpu, "driver": driver_cpu},
                }
            )
            print(
                f"  {agents:>7,} agents, round {result.round}: {result.time:6.2f} s "
                f"({result.time / ideal:.2f} × ideal), cnt {result.stats.get('cnt')}, "
                f"failures {result.failures}, calls {usage.get('calls', 0):,} "
                f"(saved {usage.get('saved', 0):,}), shared prefix {shared:.2f}, "
                f"cpu hosts {hosts_cpu:.1f} s, stub {stub_cpu:.1f} s, driver {driver_cpu:.1f} s",
                flush=True,
            )
    median = statistics.median(r["time_s"] for r in rounds)
    return {
        "agents": agents,
        "hosts": hosts,
        "concurrency_per_host": args.capacity // hosts,
        "archetypes": archetypes,
        "samples": args.samples if archetypes else None,
        "calls_per_round": statistics.median(r["usage"].get("calls", 0) for r in rounds),
        "populate_s": populate,
        "ideal_s": ideal,
        "median_round_s": median,
        "ratio": median / ideal,
        # Calls go out in waves of C (all agents start at once): the time each wave adds to L.
        "excess_per_wave_s": (median - ideal) / (calls / args.capacity),
        "shared_prefix": shared_share(first, served_before),
        "rounds": rounds,
    }


async def main(args: argparse.Namespace, url: str, stub_pid: int) -> list[dict[str, Any]]:
    sizes = [n for n in (args.baseline, args.agents) if n]
    runs = [await measure(n, args, url, stub_pid) for n in sizes]
    if args.archetype_agents:
        runs.append(await measure(args.archetype_agents, args, url, stub_pid, args.archetypes))
    return runs


def served(output: str) -> dict[str, int]:
    """What the server said it did, from its closing line ("answered X of Y calls")."""
    found = re.search(r"answered ([\d,]+) of ([\d,]+) calls", output)
    if not found:
        return {}
    answered, requests = (int(g.replace(",", "")) for g in found.groups())
    return {"answered": answered, "requests": requests, "rejected_or_failed": requests - answered}


def report(figures: dict[str, Any]) -> None:
    print()
    print(
        f"{'agents':>8} {'hosts':>5} {'median round':>13} {'ideal N·L/C':>12} {'ratio':>6} {'target':>7} "
        f"{'excess per wave':>15}"
    )
    for r in figures["runs"]:
        if r["archetypes"]:
            continue
        cnts = "/".join(str(x["cnt"]) for x in r["rounds"])
        fails = sum(x["failures"] for x in r["rounds"])
        target = f"≤ {TARGET}" if r["agents"] == figures["agents"] else "—"
        print(
            f"{r['agents']:>8,} {r['hosts']:>5} {r['median_round_s']:>11.2f} s {r['ideal_s']:>10.2f} s "
            f"{r['ratio']:>6.2f} {target:>7} {'+':>7}{r['excess_per_wave_s']:.3f} s   "
            f"cnt {cnts}, failures {fails}"
        )
    for r in figures["runs"]:
        print(
            f"{r['agents']:>8,} agents, shared prefix: {r['shared_prefix']:.2f} of prompt tokens "
            f"(target ≥ {SHARED_TARGET})"
        )
    for r in figures["runs"]:
        if r["archetypes"]:
            fails = sum(x["failures"] for x in r["rounds"])
            print(
                f"archetypes: {r['agents']:,} agents in {r['archetypes']:,} archetypes × {r['samples']} "
                f"samples on {r['hosts']} host(s): median round {r['median_round_s']:.2f} s, ideal "
                f"A·S·L/C {r['ideal_s']:.2f} s, ratio {r['ratio']:.2f} (target ≤ {ARCHETYPE_TARGET}); "
                f"{r['calls_per_round']:,.0f} calls a round for {r['agents']:,} agents; failures {fails}"
            )
    if s := figures["server"]:
        print(
            f"server: answered {s['answered']:,} of {s['requests']:,} calls "
            f"({s['rejected_or_failed']:,} answered 429 or unanswered)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=1_000, help="the smaller run; 0 to skip it")
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per answer")
    parser.add_argument("--capacity", type=int, default=1_000, help="calls the server answers at once")
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--archetype-agents", type=int, default=1_000_000, help="agents of the archetype run; 0 to skip it"
    )
    parser.add_argument("--archetypes", type=int, default=1_000)
    parser.add_argument("--samples", type=int, default=5, help="calls per archetype and round")
    parser.add_argument("--archetype-hosts", type=int, default=1)
    args = parser.parse_args()
    for hosts in (args.hosts, args.archetype_hosts):
        if args.capacity % hosts:
            # Each host has its own pool: C // H each would leave the server partly idle.
            parser.error(f"--capacity {args.capacity} is not a multiple of {hosts} hosts")
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryFile("w+") as log:
        stub = start_stub(port, args.latency, args.capacity, log)
        try:
            wait_answering(url, stub)
            with RayCluster():
                runs = asyncio.run(main(args, url, stub.pid))
        finally:
            stop_stub(stub)
        log.seek(0)
        output = log.read()
    figures = {
        "agents": args.agents,
        "latency_s": args.latency,
        "capacity": args.capacity,
        "target": TARGET,
        "shared_prefix_target": SHARED_TARGET,
        "archetype_target": ARCHETYPE_TARGET,
        "runs": runs,
        "server": served(output),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    report(figures)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"llm-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(figures, indent=1))
    print(f"written to {path}")
