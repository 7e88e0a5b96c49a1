"""Who owns what outlives a process (a server it started, a temp dir): a file its owner holds an
exclusive `flock` on for as long as it lives.

The kernel lets go of the lock when the owner ends, however it ends (SIGKILL too), so a later
process can tell a live owner's resource (the lock is held: leave it alone, or join it) from an
orphan (the lock is free: take it over, or clean it up). A PID written in a file cannot do that
safely: PIDs are reused. POSIX only (`fcntl.flock`).

The lock belongs to the open file, which child processes do not inherit (Python opens files
non-inheritable, and `subprocess` closes the rest), so a server or a Ray node this process starts
never keeps it after the owner is gone; a child forked without `exec` would.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

__all__ = ["OwnerLock"]


class OwnerLock:
    """An exclusive lock on the file at `path`, held by this process until `release`.

    The file may also carry what its owner announces (`read`, `write`): it is written in place,
    never replaced, since the lock belongs to the file, not to its name.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self._fd = fd
        self.path = path

    def __repr__(self) -> str:
        return f"OwnerLock({str(self.path)!r}, held={self.held})"

    @classmethod
    def take(cls, path: Path, *, create: bool = True) -> OwnerLock | None:
        """The lock on `path` if no live process holds it; None if one does (or, without `create`,
        if there is no such file). Never waits."""
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        while True:
            try:
                fd = os.open(path, flags, 0o600)  # not inherited by child processes (PEP 446)
            except FileNotFoundError:
                if create:
                    raise  # the folder is missing
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, path):
                return cls(fd, path)
            # The previous owner removed the file between our open and our lock (see `release`):
            # a lock on a removed file guards nothing. Try the path anew.
            os.close(fd)
            if not create:
                return None

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def read(self) -> str:
        return os.pread(self._fd, 1 << 16, 0).decode("utf-8", errors="replace")

    def write(self, text: str) -> None:
        """Replace the file's contents (readers that do not lock may briefly see it empty)."""
        data = text.encode("utf-8")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def move(self, path: Path) -> None:
        """Rename the locked file (within one filesystem): a file can be set up under a name
        nobody looks at, locked, and only then appear under the one they do."""
        os.rename(self.path, path)
        self.path = path

    def release(self, *, remove: bool = False) -> None:
        """Let go; with `remove`, delete the file first, while still holding the lock, so whoever
        opened it meanwhile notices (see `take`). Idempotent."""
        if self._fd < 0:
            return
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        os.close(self._fd)
        self._fd = -1


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)
