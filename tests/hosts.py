"""Hosts of our own on this machine: network namespaces joined by veth pairs to one bridge, each
with its own address, for tests that cross a network (Debian's iproute2; root).

Only the addresses made here are ever contacted; `Hosts.close` removes every namespace, link and
process it made, and runs even when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence

__all__ = ["OWN_PIDS", "Hosts", "hosts"]

SUBNET = "10.77.0"
OWN_PIDS = ["unshare", "--pid", "--fork", "--mount-proc"]
BRIDGE = "myrbr0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


class Hosts:
    """`count` hosts named `myr-h1` … with addresses 10.77.0.2 …; this machine is 10.77.0.1."""

    def __init__(self, count: int) -> None:
        self.names = [f"myr-h{i}" for i in range(1, count + 1)]
        self.address = {name: f"{SUBNET}.{i + 1}" for i, name in enumerate(self.names, 1)}
        self.gateway = f"{SUBNET}.1"
        self.processes: list[subprocess.Popen[bytes]] = []

    def open(self) -> Hosts:
        self.close()  # leftovers of a run that was killed
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        for i, name in enumerate(self.names, 1):
            _ip("netns", "add", name)
            _ip("link", "add", f"myr-v{i}", "type", "veth", "peer", "name", f"myr-p{i}")
            _ip("link", "set", f"myr-v{i}", "master", BRIDGE, "up")
            _ip("link", "set", f"myr-p{i}", "netns", name)
            self.run_in(name, "ip", "addr", "add", f"{self.address[name]}/24", "dev", f"myr-p{i}")
            self.run_in(name, "ip", "link", "set", f"myr-p{i}", "up")
            self.run_in(name, "ip", "link", "set", "lo", "up")
            self.run_in(name, "ip", "route", "add", "default", "via", self.gateway)
        return self

    def run_in(self, name: str, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", name, *command], check=True, capture_output=True, text=True
        )

    def start(
        self, name: str, command: Sequence[str], env: dict[str, str] | None = None, log: str | None = None
    ) -> subprocess.Popen[bytes]:
        """A long-running process on host `name`, in a process group and a PID namespace of its
        own (like a machine of its own: Ray finds its node among the processes it can see); its
        output goes to the file `log` if given."""
        with open(log or os.devnull, "wb") as output:
            process = subprocess.Popen(
                ["ip", "netns", "exec", name, *OWN_PIDS, *command],
                env={**os.environ, **(env or {})},
                start_new_session=True,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        return process

    def cut(self, name: str) -> None:
        """Take host `name` off the network: its link goes down, its processes go on."""
        i = self.names.index(name) + 1
        _ip("link", "set", f"myr-v{i}", "down")

    def kill(self, name: str) -> None:
        """Kill every process running on host `name`."""
        for pid in _ip("netns", "pids", name, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)

    def close(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:  # it had its chance to stop cleanly
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        for name in _ip("netns", "list", check=False).stdout.split("\n"):
            name = name.split(" ")[0]
            if name.startswith("myr-h"):
                self.kill(name)
                _ip("netns", "delete", name, check=False)
        for i in range(1, 33):
            _ip("link", "delete", f"myr-v{i}", check=False)
        _ip("link", "delete", BRIDGE, check=False)
        self.processes = []


@contextlib.contextmanager
def hosts(count: int) -> Iterator[Hosts]:
    made = Hosts(count).open()
    try:
        yield made
    finally:
        made.close()
