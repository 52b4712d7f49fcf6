"""One hub per data root: an exclusive lock taken before the queue database is opened.

Two hubs on one `var/` would both deliver what the queue holds (each resubmits Unreachable at start, each
recovers the other's in-process messages). The lock is `flock` on `<data root>/queue/hub.lock`, which holds the
PID of the hub that has it; the kernel releases it when that process ends, however it ends, so a kill -9 leaves
no stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .core.errors import HubLockedError

__all__ = ["DataRootLock"]


class DataRootLock:
    def __init__(self, data_root: Path) -> None:
        self.data_root = data_root
        self.path = data_root / "queue" / "hub.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise HubLockedError naming the hub that has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise HubLockedError(f"another hub (PID {holder}) is running on the data root {self.data_root};"
                                 " stop it first, or give this one another data_root") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
