"""Maildir files written durably: each copy to `tmp/`, made durable, renamed into `new/`, and the renames made
durable, before any copy counts as delivered. What to write is decided elsewhere (`transport.delivery.mailbox`);
this module only writes, in the hub's threads or in the mailbox delivery process
(`transport.delivery.mailbox_process`), which imports nothing heavier than this.

How a batch is made durable: on Linux 5.8 and later, with one `syncfs` of each file system the batch touches
once its files are written, and one more once they are renamed. The file system then writes the batch in one
go: the files' data, the inode and directory blocks they share once, one flush of the disk's cache; an fsync per
file writes those shared blocks and flushes the cache once per file (on the bench's 2-core virtual machine, ext4:
about a third of the machine's CPU and a quarter of the time per 4 KB copy, in batches of 16). Before 5.8 syncfs
did not report write errors, so there (and off Linux) each file is fsynced, and each `new/` folder once per batch.
A syncfs also writes out whatever else is waiting on that file system, which is why it serves batches of mailbox
delivery only, not the files written one at a time (the drop directory, Sent Items).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import shutil
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:
    from ..core.mailitem import Spool

__all__ = ["Copy", "write_copies", "write_side_by_side"]


@dataclass(slots=True)
class Copy:
    """One file to write: where it is written (`tmp/`) and renamed to (`new/`), what is in memory (our trace
    lines, the message), and a spooled body that follows it."""

    tmp: str
    final: str
    parts: list[bytes]
    spool: Spool | None


def _syncfs() -> Callable[[int], int] | None:
    """libc's syncfs where it reports write errors (Linux 5.8 and later), else None."""
    release = tuple(int(n) for n in re.findall(r"\d+", os.uname().release)[:2])
    if sys.platform != "linux" or release < (5, 8):
        return None
    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    syncfs.argtypes, syncfs.restype = [ctypes.c_int], ctypes.c_int
    return syncfs


SYNCFS = _syncfs()
"""How a batch is made durable: this syncfs, or per-file fsyncs when None (tests set it to see both ways)."""

WRITERS = 4  # with fsyncs per file, threads writing one batch side by side: the fsyncs overlap on the disk
PER_WRITER = 4  # copies a thread is given at least: below that, handing work to a thread costs more CPU than
# overlapping the fsyncs saves time


async def write_side_by_side(copies: list[Copy]) -> list[str]:
    """`write_copies` off the event loop, in order (with fsyncs per file, on up to WRITERS threads); per copy ""
    or its error."""
    if SYNCFS is not None:  # two syncfs for the whole batch: nothing to overlap
        return await asyncio.to_thread(write_copies, copies)
    size = max(PER_WRITER, -(-len(copies) // WRITERS))
    chunks = [copies[i:i + size] for i in range(0, len(copies), size)]
    parts = await asyncio.gather(*(asyncio.to_thread(write_copies, c) for c in chunks))
    return [error for part in parts for error in part]


def write_copies(copies: list[Copy]) -> list[str]:
    """Write each copy to `tmp/`, make the files durable, rename each into `new/`, make the renames durable (see
    the module docstring for how). Blocking: run it off the event loop. Per copy "" or why it could not be
    written; a failed syncfs or folder fsync raises (nothing of the batch is known to be on disk)."""
    errors = [""] * len(copies)

    def each(step: Callable[[Copy], None], indexes: Iterable[int]) -> list[int]:
        done = []
        for i in indexes:
            try:
                step(copies[i])
            except OSError as e:
                errors[i] = f"{e.strerror or e}"
                continue
            done.append(i)
        return done

    fsync_each = SYNCFS is None
    written = each(lambda c: _write_copy(c.tmp, c.parts, c.spool, fsync_each), range(len(copies)))
    if not fsync_each:  # the bytes are on disk before a name in new/ shows them
        _sync_folders({os.path.dirname(copies[i].tmp) for i in written}, SYNCFS)
    renamed = each(lambda c: os.rename(c.tmp, c.final), written)
    _sync_folders({os.path.dirname(copies[i].final) for i in renamed}, SYNCFS)
    return errors


def _sync_folders(folders: set[str], syncfs: Callable[[int], int] | None) -> None:
    """With syncfs, one call per file system holding the folders; else an fsync of each folder."""
    systems: set[int] = set()
    for folder in folders:
        fd = os.open(folder, os.O_RDONLY)
        try:
            if syncfs is None:
                os.fsync(fd)
                continue
            device = os.fstat(fd).st_dev
            if device not in systems:
                systems.add(device)
                if syncfs(fd) != 0:
                    code = ctypes.get_errno()
                    raise OSError(code, f"syncfs of {folder}: {os.strerror(code)}")
        finally:
            os.close(fd)


def _write_copy(path: str, parts: list[bytes], spool: Spool | None, fsync: bool) -> None:
    """A copy's file (fsynced when `fsync`): what is in memory in one `writev` (no buffer, no terminal check of a
    Python file), then a spooled body."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        written = os.writev(fd, parts)
        rest = memoryview(b"".join(parts))[written:] if written < sum(map(len, parts)) else b""
        while rest:  # a short write (rare for a file): the remainder
            rest = rest[os.write(fd, rest):]
        if spool is not None:
            with open(spool.path, "rb") as body, open(fd, "wb", closefd=False) as out:
                shutil.copyfileobj(body, out, 1 << 20)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
