"""Owner locks, held by real processes that are then killed, and the sweep of dead local Ray
clusters' temp dirs that relies on them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agents.cluster import sweep_orphaned_temp_dirs
from agents.ownership import OwnerLock

# Takes the lock on argv[1], says whether it got it, opens argv[2:] (log files, as Ray's agents
# hold theirs) and waits to be killed.
HOLDER = """
import sys, time
from pathlib import Path
from agents.ownership import OwnerLock
lock = OwnerLock.take(Path(sys.argv[1])) if sys.argv[1] != "-" else None
files = [open(name, "a") for name in sys.argv[2:]]
print(lock is not None, flush=True)
time.sleep(600)
"""


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def spawn(started: list[subprocess.Popen[str]], script: Path, lock: str, *files: Path) -> bool:
    """A process running `script` (HOLDER) that holds `lock` ("-": none) and `files` open."""
    process = subprocess.Popen(
        [sys.executable, str(script), lock, *map(str, files)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    started.append(process)
    assert process.stdout is not None
    return process.stdout.readline().strip() == "True"


def kill(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait(10)


def test_a_lock_is_held_while_its_owner_lives_and_free_once_it_is_killed(tmp_path, started):
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    path = tmp_path / "m.db.live"
    assert spawn(started, script, str(path))
    assert OwnerLock.take(path) is None  # a live owner's
    assert spawn(started, script, str(path)) is False
    kill(started[0])  # SIGKILL: the kernel lets go of its lock
    lock = OwnerLock.take(path)
    assert lock is not None
    lock.write('{"url": "redis://127.0.0.1:1/0"}')
    lock.write("{}")  # replaced, not appended
    assert lock.read() == "{}" == path.read_text()
    lock.release(remove=True)
    assert not path.exists()
    assert not lock.held
    lock.release()  # twice is harmless
    assert OwnerLock.take(path, create=False) is None  # no such file: nobody's


def test_the_sweep_removes_only_dead_owners_dirs_and_stops_their_ray_leftovers(tmp_path, started):
    ray_like = tmp_path / "site-packages" / "ray" / "agent.py"  # as Ray's scripts are named
    ray_like.parent.mkdir(parents=True)
    ray_like.write_text(HOLDER)
    other = tmp_path / "tail.py"
    other.write_text(HOLDER)
    temp = tmp_path / "tmp"
    dead, live, foreign = (temp / f"myriad-ray-{name}" for name in ("dead", "live", "foreign"))
    for folder in (dead, live, foreign):
        (folder / "logs").mkdir(parents=True)
    assert spawn(started, other, str(dead / "owner.lock"))
    assert spawn(started, other, str(live / "owner.lock"))
    spawn(started, ray_like, "-", dead / "logs" / "agent.out")  # outlives its cluster's owner
    spawn(started, other, "-", dead / "logs" / "raylet.out")  # someone reading a log: not Ray's
    owner, _, leftover, reader = started
    kill(owner)

    assert sweep_orphaned_temp_dirs(temp) == [dead]
    assert not dead.exists()
    assert live.exists()  # its owner lives
    assert foreign.exists()  # no owner file: not ours to judge
    assert leftover.poll() is not None
    assert reader.poll() is None
    assert psutil.Process(reader.pid).is_running()
