"""Connecting to Ray: join the cluster at an address, or start a private local one."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading
from types import TracebackType
from typing import Any

import ray

__all__ = ["RayCluster"]

log = logging.getLogger(__name__)


def _current_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}


class RayCluster:
    """A connection to a Ray cluster, closed on exit.

    With an address (or `RAY_ADDRESS`) it joins that cluster; otherwise it starts a local one with
    a private temp dir, so it never joins another cluster that happens to run on the machine.
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
            self._temp_dir = tempfile.mkdtemp(prefix="myriad-ray-")
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
