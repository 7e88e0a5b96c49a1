"""Connecting to Ray: join the cluster at an address, or start a private local one."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
import ray
from ray._private import services

# ray/_raylet.pyi declares only part of the Cython module: these two classes exist but are not in it.
from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

from agents.ownership import OwnerLock

__all__ = ["RayCluster", "sweep_orphaned_temp_dirs"]

log = logging.getLogger(__name__)

_TEMP_PREFIX = "myriad-ray-"
_OWNER = "owner.lock"  # in a local cluster's temp dir, locked by the process that started it
_TOKEN = "auth_token"  # in a local cluster's temp dir: the Ray token made for this start (0600)
# Ray's own files, a folder inside ours: Ray makes its folders world-writable (0777), ours is 0700.
_RAY_FILES = "ray"
_AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def _current_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}


class RayCluster:
    """A connection to a Ray cluster, closed on exit.

    With an address (or `RAY_ADDRESS`) it joins that cluster (with the token auth the environment
    sets: `RAY_AUTH_MODE=token` and `RAY_AUTH_TOKEN`); otherwise it starts a local one with a
    private temp dir, so it never joins another cluster that happens to run on the machine. That
    dir is marked as this process's (see `sweep_orphaned_temp_dirs`): if the process is killed,
    the next local cluster on the machine removes it. A local cluster listens on 127.0.0.1 only
    and requires a token made for this start (see `_require_token`).
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
        self._auth_before: dict[str, str | None] | None = None  # Ray's auth variables we changed

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
            sweep_orphaned_temp_dirs()
            self._temp_dir, self._temp_lock = _own_temp_dir()
            self._auth_before = _require_token(Path(self._temp_dir))
            log.info("starting a local Ray cluster in %s", self._temp_dir)
            with _loopback_node():
                ray.init(
                    address="local",
                    num_cpus=self.num_cpus,
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                    _temp_dir=os.path.join(self._temp_dir, _RAY_FILES),
                    _node_ip_address="127.0.0.1",
                )

    def close(self) -> None:
        if self._owned:
            ray.shutdown()
            self._owned = False
        if self._auth_before is not None:
            # Before the token file goes: Ray must not look for it any more.
            _set_auth(self._auth_before)
            self._auth_before = None
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
        if self._temp_lock is not None:
            self._temp_lock.release()
            self._temp_lock = None


def _require_token(folder: Path) -> dict[str, str | None] | None:
    """Turn Ray's token authentication on for the local cluster about to start, with a token made
    for this start and kept in `folder` (0600), never in ~/.ray. Ray's processes inherit this
    process's environment, so its workers present the token too. Returns the auth variables as
    they were, to restore on close; None if the operator turned authentication off
    (`RAY_AUTH_MODE=disabled`), which is honoured with a warning.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        log.warning(
            "Ray token authentication is off (RAY_AUTH_MODE=disabled): any user of this machine "
            "can join the local Ray cluster and run code in it"
        )
        return None
    token = folder / _TOKEN
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))
    # RAY_AUTH_TOKEN would win over the file: a token of another cluster is no use here.
    return _set_auth({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": None, "RAY_AUTH_TOKEN_PATH": str(token)})


def _set_auth(values: dict[str, str | None]) -> dict[str, str | None]:
    """Set Ray's auth variables (None: unset); returns what they were."""
    before = {name: os.environ.get(name) for name in _AUTH_VARS}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    # Ray reads the mode and the token once per process: make it read them again, config first
    # (as Ray's own `_enable_token_auth` and test utilities do).
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    return before


@contextlib.contextmanager
def _loopback_node() -> Iterator[None]:
    """Keep 127.0.0.1 as the node's address while `ray.init` starts a local cluster.

    Ray replaces a loopback node address by the machine's outward one (`resolve_ip_for_localhost`,
    meant for clusters of several machines), and its servers then listen on every interface (GCS,
    raylet, workers) or on that address (runtime-env agent, autoscaler metrics). Kept as
    127.0.0.1, they all listen on loopback (measured with Ray 2.60).
    """
    resolve = services.resolve_ip_for_localhost
    services.resolve_ip_for_localhost = lambda host: host
    try:
        yield
    finally:
        services.resolve_ip_for_localhost = resolve


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
