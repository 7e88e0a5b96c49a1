"""Dashboard benchmark: how fast the pages of a 1,000,000-agent run answer, served for real.

A 1,000,000-agent guess-2/3 run (level-k agents, k = 0..3; gender 50/50 and four age groups) is
submitted through the service layer and driven to completion by a workflow worker on a local Ray
cluster, recording every action in Postgres. The app is then served by uvicorn in a subprocess
(as `myriad serve` would on Postgres: no worker inside) and, signed in with the token, this script
times sequential GETs of:

- the run page, `/runs/{id}`;
- the agents page, `/runs/{id}/agents`, filtered and paged (kind with pages down to the last,
  attributes, name prefix, host, failures, a sort), cycling through the queries below;
- an agent's page, `/runs/{id}/agents/{agent}` (its profile and its answers by round), for agents
  spread over the whole run.

Targets: p95 <= 150 ms for the run page and the agents page, <= 50 ms for an agent's page.
`--api` times the REST endpoint `/api/v1/runs/{id}/agents` (same parameters, Bearer token) in
place of the agents page; `--reuse` keeps the run already in the
bench database when it is a completed run of that size, so re-measuring skips the generation;
`--sample N` records N agents' actions, not all (ten million agents: `--agents 10000000 --sample
100000`).

`--load` measures something else: the embedded service under light load. The real `myriad serve`
(SQLite, its own Valkey, and the `myriad worker` process it starts beside itself with a local Ray
cluster) drives a 10,000-agent guess-2/3 run (examples/guess-10k.yaml, long) twice: once with nobody
watching, once while 10 clients poll the runs list (`/api/v1/runs`), the agents API
(`/api/v1/runs/{id}/agents`) and the run page (`/runs/{id}`), each waiting `--think` seconds between
two requests (10 requests a second in all by default, as many browser tabs polling would). It
prints the p95 latency of those requests against the 150 ms target, and the run's rounds per second
under load as a ratio of the unloaded run's (target: >= 0.8), each rate measured over `--window`
seconds once the run has played a few rounds. Latency depends on what else the machine runs, so it
also prints the web server's CPU time per request and the machine's load average.

Usage: python bench/dashboard.py [--agents 1000000] [--rounds 10] [--sample N] [--requests 200]
                                 [--api] [--reuse] [--postgres URL]
       python bench/dashboard.py --load [--clients 10] [--think 1.0] [--window 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx2 as httpx
import psutil

from agents.cluster import RayCluster
from agents.spec import RunSpec
from backend import services
from backend.runtime import Runtime
from backend.settings import Settings
from backend.store.db import migrate
from backend.workflow.worker import Worker

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]
DATABASE = "myriad_dashbench"
REDIS_URL = "redis://127.0.0.1:6379/14"
TOKEN = "dashboard-bench-token"
TARGET_MS = 150.0
AGENT_TARGET_MS = 50.0  # an agent's page: its profile and answers by round
HOSTS = 4
PAGE = 50
LEVEL_K = [{"kind": "level_k", "share": 25, "params": {"k": k}} for k in range(4)]
AGES = {"18-29": 21, "30-44": 26, "45-59": 25, "60+": 28}
WARMUP = 2  # rounds through every query before timing


def spec(agents: int, rounds: int, sample: int | None = None) -> RunSpec:
    return RunSpec.parse(
        {
            "name": f"dashboard-bench-{agents}",
            "scenario": {"name": "guess_two_thirds"},
            "rounds": rounds,
            "seed": 5,
            "record": "all" if sample is None else {"sample": sample},
            "population": {
                "total": agents,
                "attributes": {"gender": {"female": 50, "male": 50}, "age": AGES},
                "kinds": LEVEL_K,
            },
            "placement": {"hosts": HOSTS},
        }
    )


def bench_url(url: str) -> str:
    """The bench database beside the one in `url`, as an asyncpg URL."""
    return Settings(database_url=url.rsplit("/", 1)[0] + "/" + DATABASE).database_url


async def fresh_database(url: str) -> str:
    """An empty bench database beside the one in `url`, migrated to head."""
    server = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(server)
    await conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    await conn.execute(f"CREATE DATABASE {DATABASE}")
    await conn.close()
    await asyncio.to_thread(migrate, bench_url(url))
    return bench_url(url)


async def existing_run(url: str, agents: int) -> tuple[int, int] | None:
    """The id and rounds of the newest completed run of `agents` agents in the bench database."""
    try:
        conn = await asyncpg.connect(bench_url(url).replace("postgresql+asyncpg://", "postgresql://"))
    except asyncpg.InvalidCatalogNameError:
        return None
    try:
        row = await conn.fetchrow(
            "SELECT id, rounds FROM runs WHERE status = 'completed' AND agents = $1 ORDER BY id DESC LIMIT 1",
            agents,
        )
        return None if row is None else (row["id"], row["rounds"])
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()


async def generate(run: RunSpec, url: str) -> tuple[int, float, dict[str, Any]]:
    """Submit the run and drive it with a worker: its id, the seconds it took, its live state."""
    settings = Settings(database_url=url, redis_url=REDIS_URL, worker_id="dashboard-bench")
    async with Runtime(settings) as rt:
        # Redis database 14 is this benchmark's, as myriad_dashbench is: a fresh database restarts
        # the run ids, so nothing live of an earlier run may linger under the same id.
        await rt.live.redis.flushdb()
        started = time.perf_counter()
        queued = await services.submit(rt, run)
        worker = Worker(rt)
        claimed = await worker.claim(queued.id)
        assert claimed is not None
        status = await worker.drive(claimed)
        elapsed = time.perf_counter() - started
        state = await rt.live.state(queued.id)
    if status != "completed":
        raise SystemExit(f"the run ended {status}, not completed: {state}")
    return queued.id, elapsed, state


async def vacuum(url: str) -> float:
    """VACUUM ANALYZE the tables the pages read: the state autovacuum reaches a little later, so
    plans and index-only scans do not depend on when it last passed."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    started = time.perf_counter()
    for table in ("runs", "agent_hosts", "rounds", "action_chunks", "action_failures"):
        await conn.execute(f"VACUUM (ANALYZE) {table}")
    await conn.close()
    return time.perf_counter() - started


# -- serving and timing ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(url: str, port: int) -> subprocess.Popen[bytes]:
    """uvicorn with the app factory, in its own process group, as production serves it (the app
    alone starts no worker)."""
    env = os.environ | {"DATABASE_URL": url, "REDIS_URL": REDIS_URL, "MYRIAD_TOKEN": TOKEN}
    command = [sys.executable, "-m", "uvicorn", "--factory", "backend.app:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)


def wait_healthy(client: httpx.Client, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode} before it was healthy")
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server did not answer /healthz within {timeout:.0f} s")


def stop(server: subprocess.Popen[bytes], timeout: float = 15) -> None:
    server.terminate()
    try:
        server.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def get(client: httpx.Client, path: str, params: list[tuple[str, str]] | None = None) -> tuple[float, Any]:
    """Seconds for one GET, and its response; anything but 200 aborts the benchmark."""
    started = time.perf_counter()
    response = client.get(path, params=params)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        code = response.status_code
        shown = path + ("?" + str(httpx.QueryParams(params)) if params else "")
        hint = "\n(no agents page yet? `--api` times the REST endpoint)" if code in (404, 405) else ""
        raise SystemExit(f"GET {shown} answered {code}, not 200: {response.text[:300]!r}{hint}")
    return elapsed, response


def agent_queries(client: httpx.Client, run_id: int) -> list[tuple[str, list[tuple[str, str]]]]:
    """The agents page's workload: (label, query) pairs; kind pages spread down to the last one,
    so deep OFFSETs are timed too. Counts come from the REST endpoint."""
    kind = ("kind", "level_k(k=2)")
    _, response = get(client, f"/api/v1/runs/{run_id}/agents", [kind, ("limit", "1")])
    matching = response.json()["count"]
    base = [kind, ("limit", str(PAGE))]
    queries = []
    for share in (0, 0.25, 0.5, 0.75, 1):
        offset = min(int(matching * share) // PAGE * PAGE, max(matching - PAGE, 0))
        queries.append((f"kind, offset {offset:,}", [*base, ("offset", str(offset))]))
    limit = ("limit", str(PAGE))
    queries += [
        ("attribute gender=female", [("attribute", "gender=female"), limit]),
        ("gender=female & age=30-44, offset 10,000", [
            ("attribute", "gender=female"), ("attribute", "age=30-44"), limit, ("offset", "10000")
        ]),
        ("kind & gender, sorted by name", [
            ("kind", "level_k(k=1)"), ("attribute", "gender=male"), ("sort", "name"), limit
        ]),
        ("name prefix Ana", [("name", "Ana"), limit]),
        ("host 3", [("host", str(HOSTS - 1)), limit]),
        ("host 3, offset 100,000", [("host", str(HOSTS - 1)), limit, ("offset", "100000")]),
        ("failed in the last round", [("failed", "true"), limit]),
        ("no filter, sorted by name, descending", [("sort", "name"), ("descending", "true"), limit]),
    ]  # fmt: skip
    return queries


def summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    p95 = statistics.quantiles(ms, n=100, method="inclusive")[94] if len(ms) > 1 else ms[0]
    return {"n": len(ms), "p50_ms": statistics.median(ms), "p95_ms": p95, "max_ms": ms[-1]}


def measure(url: str, run_id: int, agents: int, requests: int, api: bool) -> dict[str, Any]:
    port = free_port()
    server = serve(url, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            wait_healthy(client, server)
            signed_in = client.get("/login", params={"token": TOKEN})
            if signed_in.status_code != 303 or "myriad_session" not in client.cookies:
                raise SystemExit(f"sign-in with the token failed: {signed_in.status_code}")
            client.headers["Authorization"] = f"Bearer {TOKEN}"
            queries = agent_queries(client, run_id)
            agents_path = f"/api/v1/runs/{run_id}/agents" if api else f"/runs/{run_id}/agents"
            run_path = f"/runs/{run_id}"
            for _ in range(WARMUP):
                get(client, run_path)
                for _, params in queries:
                    get(client, agents_path, params)
            run_times = [get(client, run_path)[0] for _ in range(requests)]
            spread = max(1, agents // requests)  # agents from the first host's to the last's
            agent_times = [get(client, f"{run_path}/agents/{i * spread}")[0] for i in range(requests)]
            by_query: dict[str, list[float]] = {label: [] for label, _ in queries}
            for i in range(requests):
                label, params = queries[i % len(queries)]
                by_query[label].append(get(client, agents_path, params)[0])
    finally:
        stop(server)
    return {
        "run_page": {"path": run_path, **summary(run_times)},
        "agents_page": {"path": agents_path, **summary([t for times in by_query.values() for t in times])},
        "agent_page": {"path": f"{run_path}/agents/ID", "target_ms": AGENT_TARGET_MS, **summary(agent_times)},
        "agents_queries": {
            label: {"query": str(httpx.QueryParams(params)), **summary(by_query[label])}
            for label, params in queries
        },
    }


def report(figures: dict[str, Any]) -> None:
    print(f"\n{'page':<34} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'p95/target':>10}")
    for name in ("run_page", "agents_page", "agent_page"):
        f = figures[name]
        print(
            f"{f['path']:<34} {f['p50_ms']:8.1f} {f['p95_ms']:8.1f} {f['max_ms']:8.1f} "
            f"{f['p95_ms'] / f.get('target_ms', TARGET_MS):10.2f}"
        )
    print(f"\n{'agents query':<42} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for label, f in figures["agents_queries"].items():
        print(f"{label:<42} {f['p50_ms']:8.1f} {f['p95_ms']:8.1f} {f['max_ms']:8.1f}")


def main(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"agents": args.agents, "target_ms": TARGET_MS, "api": args.api}
    found = asyncio.run(existing_run(args.postgres, args.agents)) if args.reuse else None
    url = bench_url(args.postgres)
    if found is None:
        run = spec(args.agents, args.rounds, args.sample)
        url = asyncio.run(fresh_database(args.postgres))
        with RayCluster():
            run_id, seconds, state = asyncio.run(generate(run, url))
        figures |= {
            "rounds": args.rounds,
            "sample": args.sample,
            "generation_s": seconds,
            "actions_written": state.get("actions_written"),
            "seconds_writing_actions": state.get("seconds_writing_actions"),
        }
        print(f"generated run {run_id}: {args.agents:,} agents, {args.rounds} rounds in {seconds:.1f} s")
        figures["vacuum_analyze_s"] = asyncio.run(vacuum(url))
    else:
        run_id, rounds = found
        print(f"reusing run {run_id} ({args.agents:,} agents, {rounds} rounds) in {DATABASE}")
        figures |= {"rounds": rounds, "reused_run": True}
    figures["run_id"] = run_id
    figures |= measure(url, run_id, args.agents, args.requests, args.api)
    report(figures)
    return figures


# -- the embedded service under load ------------------------------------------------------------

EXAMPLE = ROOT / "examples" / "guess-10k.yaml"
LOAD_ROUNDS = 100_000  # more than any window needs: the run is stopped once measured
WARM_ROUNDS = 5  # rounds a run plays before its window opens (hosts placed, caches warm)
ROUND_TARGET = 0.8  # rounds per second under load, at least this share of the unloaded run's


def serve_embedded(folder: Path, port: int) -> subprocess.Popen[bytes]:
    """`myriad serve` on the embedded default in `folder`, in a session of its own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MYRIAD_", "RAY_")) and k not in ("REDIS_URL", "DATABASE_URL")
    }
    env |= {
        "DATABASE_URL": f"sqlite:///{folder / 'myriad.db'}",
        "MYRIAD_TOKEN": TOKEN,
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    command = [str(Path(sys.executable).with_name("myriad")), "serve", "--port", str(port)]
    with (folder / "serve.log").open("wb") as log:
        return subprocess.Popen(
            command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


async def _round(client: httpx.AsyncClient, run_id: int) -> tuple[int, str]:
    run = (await client.get(f"/api/v1/runs/{run_id}")).json()
    return max(run["round"], run["live"].get("round") or 0), run["status"]


async def _played(client: httpx.AsyncClient, run_id: int, rounds: int, timeout: float = 300) -> int:
    """Wait until the run has played `rounds` rounds; returns the round it is at."""
    deadline = time.monotonic() + timeout
    while (at := await _round(client, run_id))[0] < rounds:
        if at[1] not in ("queued", "running"):
            raise SystemExit(f"run {run_id} ended {at[1]} at round {at[0]}: see the service's log")
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run_id} did not reach round {rounds} in {timeout:.0f} s")
        await asyncio.sleep(0.1)
    return at[0]


async def _rate(client: httpx.AsyncClient, run_id: int, window: float) -> dict[str, float]:
    """Rounds per second of a run over `window` seconds once it has played WARM_ROUNDS rounds
    (its round read twice a second, by one client)."""
    first, started = await _played(client, run_id, WARM_ROUNDS), time.perf_counter()
    while time.perf_counter() - started < window:
        await asyncio.sleep(0.5)
        last, status = await _round(client, run_id)
        if status != "running":
            raise SystemExit(f"run {run_id} ended {status} inside its window")
    seconds = time.perf_counter() - started
    return {"rounds": last - first, "seconds": seconds, "rounds_per_s": (last - first) / seconds}


async def _poll(
    client: httpx.AsyncClient,
    paths: list[tuple[str, str, dict[str, str]]],
    think: float,
    times: dict[str, list[float]],
    done: asyncio.Event,
    offset: int,
) -> None:
    """One client: the three endpoints in turn, `think` seconds apart, until `done`."""
    i = offset
    while not done.is_set():
        name, path, params = paths[i % len(paths)]
        started = time.perf_counter()
        response = await client.get(path, params=params)
        times[name].append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"GET {path} answered {response.status_code}: {response.text[:200]!r}")
        i += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), think)


async def _submit_long(client: httpx.AsyncClient, name: str) -> int:
    import yaml

    spec = yaml.safe_load(EXAMPLE.read_text()) | {"name": name, "rounds": LOAD_ROUNDS}
    response = await client.post("/api/v1/runs", json=spec)
    if response.status_code != 201:
        raise SystemExit(f"the run was refused: {response.status_code} {response.text[:300]}")
    return int(response.json()["id"])


async def _stop(client: httpx.AsyncClient, run_id: int, timeout: float = 120) -> None:
    await client.post(f"/api/v1/runs/{run_id}/stop")
    deadline = time.monotonic() + timeout
    while (await _round(client, run_id))[1] not in ("stopped", "completed", "failed"):
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run_id} did not stop in {timeout:.0f} s")
        await asyncio.sleep(0.2)


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def measure_load(url: str, web: int, clients: int, think: float, window: float) -> dict[str, Any]:
    """The two runs' rates and the requests' latencies; `web`: the web server's process id (its
    CPU time per request says what the pages cost, whatever else the machine runs)."""
    api = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=api, timeout=60) as control:
        quiet = await _submit_long(control, "unloaded")
        unloaded = await _rate(control, quiet, window)
        await _stop(control, quiet)
        print(
            f"unloaded: {unloaded['rounds_per_s']:.2f} rounds/s ({unloaded['rounds']} rounds in "
            f"{unloaded['seconds']:.1f} s)"
        )

        busy = await _submit_long(control, "loaded")
        paths = [
            ("runs list", "/api/v1/runs", {}),
            ("agents API", f"/api/v1/runs/{busy}/agents", {"limit": "50", "attribute": "gender=female"}),
            ("run page", f"/runs/{busy}", {}),
        ]
        times: dict[str, list[float]] = {name: [] for name, _, _ in paths}
        done = asyncio.Event()
        visitors = []
        for _ in range(clients):
            visitor = httpx.AsyncClient(base_url=url, headers=api, timeout=60)
            signed_in = await visitor.get("/login", params={"token": TOKEN})
            if signed_in.status_code != 303:
                raise SystemExit(f"sign-in with the token failed: {signed_in.status_code}")
            visitors.append(visitor)
        await _played(control, busy, 1)  # the agents are dealt out: their API answers
        polling = [
            asyncio.create_task(_poll(v, paths, think, times, done, offset=i)) for i, v in enumerate(visitors)
        ]
        cpu = _cpu_seconds(web)
        try:
            loaded = await _rate(control, busy, window)
        finally:
            done.set()
            await asyncio.gather(*polling)
            for visitor in visitors:
                await visitor.aclose()
        cpu = _cpu_seconds(web) - cpu
        load_average = os.getloadavg()[0]
        await _stop(control, busy)
    every = [t for ts in times.values() for t in ts]
    return {
        "clients": clients,
        "think_s": think,
        "window_s": window,
        "unloaded": unloaded,
        "loaded": loaded,
        "rounds_ratio": loaded["rounds_per_s"] / unloaded["rounds_per_s"],
        "requests": {"all": summary(every)} | {name: summary(ts) for name, ts in times.items()},
        "web_cpu_ms_per_request": cpu * 1000 / len(every),
        "load_average_1min": load_average,
    }


def report_load(figures: dict[str, Any]) -> None:
    print(
        f"\n{figures['clients']} clients, {figures['think_s']} s between two requests of each, "
        f"during a {figures['agents']:,}-agent run under `myriad serve` (worker in its own process)"
    )
    print(f"{'requests':<14} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'p95/150ms':>10}")
    for name, f in figures["requests"].items():
        print(
            f"{name:<14} {f['n']:6d} {f['p50_ms']:8.1f} {f['p95_ms']:8.1f} {f['max_ms']:8.1f} "
            f"{f['p95_ms'] / TARGET_MS:10.2f}"
        )
    print(
        f"the web server's CPU time per request: {figures['web_cpu_ms_per_request']:.1f} ms; "
        f"the machine's load average: {figures['load_average_1min']:.1f} ({os.cpu_count()} CPUs)"
    )
    u, loaded = figures["unloaded"]["rounds_per_s"], figures["loaded"]["rounds_per_s"]
    ratio = figures["rounds_ratio"]
    print(f"\nrounds per second: {u:.2f} unloaded, {loaded:.2f} under load")
    print(f"ratio {ratio:.2f} (target >= {ROUND_TARGET})")


def main_load(args: argparse.Namespace) -> dict[str, Any]:
    # Stopped by a signal, it still stops the service it started (in a session of its own).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    folder = Path(tempfile.mkdtemp(prefix="myriad-dashbench-"))
    port = free_port()
    server = serve_embedded(folder, port)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            wait_healthy(client, server, timeout=120)
        figures = {"mode": "load", "agents": 10_000, "target_ms": TARGET_MS, "round_target": ROUND_TARGET}
        figures |= asyncio.run(measure_load(url, server.pid, args.clients, args.think, args.window))
    finally:
        stop(server, timeout=60)  # serve waits for its worker to stop
        shutil.rmtree(folder, ignore_errors=True)
    report_load(figures)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--sample", type=int, help="record this many agents' actions, not all")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--api", action="store_true", help="time /api/v1/runs/{id}/agents, not the page")
    parser.add_argument("--reuse", action="store_true", help="keep a completed run of this size")
    parser.add_argument("--load", action="store_true", help="the embedded service under load (see above)")
    parser.add_argument("--clients", type=int, default=10, help="--load: clients polling at once")
    parser.add_argument(
        "--think", type=float, default=1.0, help="--load: seconds between a client's requests"
    )
    parser.add_argument(
        "--window", type=float, default=20, help="--load: seconds each run's rate is measured"
    )
    args = parser.parse_args()
    figures = main_load(args) if args.load else main(args)
    figures["when"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.mkdir(exist_ok=True)
    kind = "dashboard-load" if args.load else "dashboard"
    path = RESULTS / f"{kind}-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(figures, indent=1))
    print(f"written to {path}")
