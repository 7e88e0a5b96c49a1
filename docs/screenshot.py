"""Take the README's picture: a live run page, mid-run, to docs/images/run-page.png.

    .venv/bin/python docs/screenshot.py [--out PATH] [--agents N] [--at-round R]

It starts a real `myriad serve` on the embedded default (a SQLite file in a temporary folder, a
free loopback port), signs in with the token in MYRIAD_TOKEN (or one made here), submits the
paper's game from examples/guess-10k.yaml through the REST API, scaled to 100,000 agents and 40
rounds (its random answerers waiting 2 s, so that a round takes two), waits until round R
(default 3) is recorded, and photographs the run page in Debian's Chromium at 1280×900. Then it
stops the run and the service, Ray's processes included.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import yaml
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
MYRIAD = ROOT / ".venv" / "bin" / "myriad"
CHROMIUM = "/usr/bin/chromium"
SIZE = {"width": 1280, "height": 900}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(url: str, token: str, body: Any = None, method: str | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"))
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            text = answer.read()
    except urllib.error.HTTPError as e:  # the API's sentence, not a traceback
        raise SystemExit(
            f"{request.get_method()} {url}: {e.code} {e.read().decode(errors='replace')}"
        ) from None
    return json.loads(text) if text else None


def wait_until(what: str, check: Any, timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if (found := check()) is not None:
                return found
        time.sleep(every)
    raise SystemExit(f"gave up after {timeout:.0f} s waiting for {what}")


@contextlib.contextmanager
def service(folder: Path, port: int, token: str) -> Iterator[str]:
    """`myriad serve` on the embedded default in `folder`; stopped with everything it started."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "RAY_ADDRESS")}
    env |= {"MYRIAD_TOKEN": token, "DATABASE_URL": f"sqlite:///{folder / 'myriad.db'}"}
    log = (folder / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(MYRIAD), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=folder,  # no .env of the working tree is read
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    site = f"http://127.0.0.1:{port}"

    def healthy() -> bool | None:
        if process.poll() is not None:
            raise SystemExit(
                "myriad serve exited early:\n" + (folder / "serve.log").read_text(errors="replace")
            )
        with urllib.request.urlopen(f"{site}/healthz", timeout=5) as answer:
            return True if answer.status == 200 else None

    try:
        wait_until("the service to answer /healthz", healthy, timeout=180)
        yield site
    finally:
        stop(process)
        log.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the service, then SIGKILL to whatever of its tree is left: Ray's workers run in
    process groups of their own, so the tree is collected first."""
    try:
        tree = [process, *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    time.sleep(1)
    for p in tree[1:]:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.is_running():
                p.kill()


def spec(agents: int, rounds: int) -> dict[str, Any]:
    """The paper's game from examples/guess-10k.yaml, at the given size, a round a second."""
    data = yaml.safe_load((ROOT / "examples" / "guess-10k.yaml").read_text())
    data["name"] = f"guess-two-thirds-{agents // 1000}k"
    data["rounds"] = rounds
    data["population"]["total"] = agents
    data["record"] = {"sample": 1000}  # every round's statistics; the actions of 1,000 agents
    # Rule-based rounds of 100,000 agents take a tenth of a second: the run would be over before
    # the picture. The random answerers wait 2 s first (the paper's efficiency probe: a stand-in
    # for a language model's latency), so each round takes two seconds and the page is caught live.
    for share in data["population"]["kinds"]:
        if share["kind"] == "uniform":
            share.update(kind="probe", params={"delay": 2.0})
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "run-page.png")
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--full-page", action="store_true", help="the whole page, not the first 900 px")
    parser.add_argument("--at-round", type=int, default=3, help="photograph once this round is recorded")
    args = parser.parse_args()
    token = os.environ.get("MYRIAD_TOKEN") or secrets.token_urlsafe(24)

    with (
        tempfile.TemporaryDirectory(prefix="myriad-screenshot-") as tmp,
        service(Path(tmp), free_port(), token) as site,
    ):
        run = call(f"{site}/api/v1/runs", token, spec(args.agents, args.rounds))
        sys.stderr.write(f"run {run['id']}: {run['agents']:,} agents, {run['rounds']} rounds\n")
        runs = f"{site}/api/v1/runs/{run['id']}"

        def reached() -> dict[str, Any] | None:
            now = call(runs, token)
            if now["status"] in ("failed", "stopped", "completed"):
                raise SystemExit(
                    f"the run ended ({now['status']}) before round {args.at_round}: {now['error']}"
                )
            return now if now["round"] >= args.at_round else None

        try:
            shoot(
                site,
                token,
                run["id"],
                args.out,
                full_page=args.full_page,
                when=lambda: wait_until(f"round {args.at_round}", reached, timeout=600),
            )
        finally:
            with contextlib.suppress(OSError, SystemExit):  # ended already, or the service is away
                call(f"{runs}/stop", token, method="POST")
    sys.stderr.write(f"{args.out}\n")


def shoot(
    site: str, token: str, run_id: int, out: Path, *, when: Callable[[], object], full_page: bool = False
) -> None:
    """Photograph the run page once `when` returns. The browser starts and signs in first, so the
    page is loaded a moment after the round, not several rounds later."""
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport=SIZE, device_scale_factor=1)
            page.goto(f"{site}/login?token={token}")
            when()
            page.goto(f"{site}/runs/{run_id}")
            # The charts draw once their data is there; wait for them when the page has them, but
            # take the picture anyway: the page's parts change as the dashboard grows.
            with contextlib.suppress(PlaywrightError):
                page.wait_for_selector("canvas", state="visible", timeout=15_000)
            page.wait_for_timeout(1_000)  # the charts' animations end
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=full_page)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
