"""`myriad node join` (this machine as a device of a cluster) and `myriad llm-stub`."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

import click

from agents.llm_stub import StubConfig, StubServer
from backend.cli.main import console, fail, main


@main.group()
def node() -> None:
    """This machine as a device of a Myriad cluster."""


@node.command("join")
@click.argument("address")
@click.option("--cpus", type=click.IntRange(min=0), help="CPUs to give agent hosts [all]")
@click.option("--gpus", type=click.IntRange(min=0), help="GPUs to offer [all]")
@click.option("--ip", "node_ip", help="this machine's address as the head sees it [detected]")
@click.option(
    "--temp-dir", type=click.Path(file_okay=False), help="where Ray keeps this node's files [Ray's]"
)
def node_join(
    address: str, cpus: int | None, gpus: int | None, node_ip: str | None, temp_dir: str | None
) -> None:
    """Join the Ray cluster whose head is at ADDRESS (host:port, e.g. head-node:6380) until
    stopped; new runs place hosts on this node by its free CPUs. The cluster's token comes from
    RAY_AUTH_TOKEN (as in the head's .env); RAY_AUTH_MODE=disabled joins a cluster without one."""
    # Ray authenticates only when told to: a token is required unless the operator says otherwise.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if os.environ["RAY_AUTH_MODE"] == "token" and not _ray_token_given():
        fail("set RAY_AUTH_TOKEN to the cluster's token (RAY_AUTH_TOKEN in the head's .env)")
    command = ["ray", "start", f"--address={address}", "--block", "--disable-usage-stats"]
    command += [f"--num-cpus={cpus}"] * (cpus is not None) + [f"--num-gpus={gpus}"] * (gpus is not None)
    command += [f"--node-ip-address={node_ip}"] * (node_ip is not None)
    command += [f"--temp-dir={temp_dir}"] * (temp_dir is not None)
    beside = Path(sys.executable).with_name("ray")  # the venv's, when its bin is not on PATH
    ray = str(beside) if beside.exists() else shutil.which("ray")
    if ray is None:
        fail("the `ray` command is missing: install Myriad (it brings Ray) on this machine first")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.execv(ray, command)


def _ray_token_given() -> bool:
    """A Ray token in one of the places Ray reads it from."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path).is_file()


@main.command("llm-stub")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--latency", default=0.5, show_default=True, type=click.FloatRange(min=0), help="seconds per answer"
)
@click.option(
    "--capacity", default=0, show_default=True, type=click.IntRange(min=0), help="calls in flight; 0: any"
)
@click.option(
    "--error-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1), help="share of 500s"
)
@click.option(
    "--garbage-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1), help="share unreadable"
)
def llm_stub(
    host: str, port: int, latency: float, capacity: int, error_rate: float, garbage_rate: float
) -> None:
    """Serve a stand-in OpenAI-compatible model (for demos, tests and benchmarks without a GPU)."""
    config = StubConfig(latency=latency, capacity=capacity, error_rate=error_rate, garbage_rate=garbage_rate)
    asyncio.run(_stub(StubServer(config, host, port)))


async def _stub(server: StubServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    url = await server.start()
    console.print(f"stand-in model at {url} (any model name)", highlight=False)
    await stop.wait()
    await server.stop()
    served = server.served
    console.print(
        f"answered {served.answered:,} of {served.requests:,} calls; "
        f"{served.stats()['shared_prefix']:.2f} of prompt tokens in a shared prefix",
        highlight=False,
    )
