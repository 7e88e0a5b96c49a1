"""Connecting to Ray: join the cluster at an address, or start a private local one."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
import ray

from agents.ownership import OwnerLock

__all__ = ["RayCluster", "sweep_orphaned_temp_dirs"]

log = logging.getLogger(__name__)

_TEMP_PREFIX = "myriad-ray-"
_OWNER = "owner.lock"  # in a local cluster's temp dir, locked by the process that started it


def _current_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}


class RayCluster:
    """A connection to a Ray cluster, closed on exit.

    With an address (or `RAY_ADDRESS`) it joins that cluster; otherwise it starts a local one with
    a private temp dir, so it never joins another cluster that happens to run on the machine. That
    dir is marked as this process's (see `sweep_orphaned_temp_dirs`): if the process is killed,
    the next local cluster on the machine removes it.
    Inside a process already connected to Ray it reuses that connection and leaves it open.

    Args:
        address: "host:port" of a running cluster's head; None for `RAY_ADDRESS` or a local one.
        num_cpus: CPUs of a local cluster; None for all of the machine's.
    """

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus
        self._owned = False
        self._temp_dir: str | None = None
        self._temp_lock: OwnerLock | None = None

    def __repr__(self) -> str:
        return f"RayCluster(address={self.address or 'local'!r})"

    def __enter__(self) -> RayCluster:
        self.connect()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def connect(self) -> None:
        if ray.is_initialized():
            return
        # ray.init replaces the process's SIGTERM handler with one that only logs and dies; the
        # service's own graceful shutdown (uvicorn, `myriad worker`) must keep working.
        handlers = _current_handlers()
        try:
            self._init()
        except BaseException:
            self._owned = True  # what ray.init started before it failed is ours to stop
            self.close()
            raise
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        self._owned = True

    def _init(self) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if self.address:
            log.info("joining the Ray cluster at %s", self.address)
            ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=True)
        else:
            # A private cluster on loopback: token auth would only guard it against ourselves.
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            sweep_orphaned_temp_dirs()
            self._temp_dir, self._temp_lock = _own_temp_dir()
            log.info("starting a local Ray cluster in %s", self._temp_dir)
            ray.init(
                address="local",
                num_cpus=self.num_cpus,
                include_dashboard=False,
                logging_level=logging.WARNING,
                _temp_dir=self._temp_dir,
            )

    def close(self) -> None:
        if self._owned:
            ray.shutdown()
            self._owned = False
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
        if self._temp_lock is not None:
            self._temp_lock.release()
            self._temp_lock = None


def _own_temp_dir() -> tuple[str, OwnerLock]:
    """A new temp dir for a local cluster, marked as this process's. Its owner file is locked
    under another name and only then renamed, so a sweep never mistakes a dir being set up for
    an orphan."""
    path = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX))
    lock = OwnerLock.take(path / f".{_OWNER}.new")
    if lock is None:  # a file in a dir just made, private to us: nobody else can hold it
        raise RuntimeError(f"{path} is locked by another process")
    lock.move(path / _OWNER)
    return str(path), lock


def sweep_orphaned_temp_dirs(root: Path | None = None) -> list[Path]:
    """Remove the temp dirs of local clusters whose owner died without removing them (SIGKILL, a
    crash), after stopping those of their processes that still run; returns the dirs removed.

    A dir is an orphan when the lock on its owner file is free. Dirs without one (another
    program's, or an older Myriad's) and those of live owners are left alone.
    """
    removed = []
    for path in sorted(Path(root or tempfile.gettempdir()).glob(f"{_TEMP_PREFIX}*")):
        try:
            lock = OwnerLock.take(path / _OWNER, create=False)
        except OSError:  # another user's, say: not ours to judge
            continue
        if lock is None:
            continue
        try:
            _stop_leftovers(path)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            log.warning("removed %s, left by a local Ray cluster whose process died", path)
        finally:
            lock.release()
    return removed


def _stop_leftovers(folder: Path) -> None:
    """Kill the Ray processes of a dead local cluster that still run. Its GCS and raylet die with
    the driver (Ray ties them to it), but the dashboard and runtime-env agents notice only about a
    minute later (measured). They are known by the files they hold open in the cluster's dir."""
    inside = f"{folder}{os.sep}"
    leftovers = []
    for process in psutil.process_iter():
        try:
            if process.pid == os.getpid() or not _is_ray(process.cmdline()):
                continue
            if any(f.path.startswith(inside) for f in process.open_files()):
                leftovers.append(process)
        except psutil.Error:  # gone, or another user's
            continue
    for process in leftovers:
        with contextlib.suppress(psutil.Error):
            process.kill()  # an orphan of a killed cluster: nothing of it to save
    psutil.wait_procs(leftovers, timeout=5)


def _is_ray(cmdline: list[str]) -> bool:
    """Ray's own processes: its workers and agents (titled `ray::…`) and its binaries and scripts."""
    command = " ".join(cmdline)
    return command.startswith("ray::") or f"{os.sep}ray{os.sep}" in command
