"""Maildir files written durably: each copy to `tmp/`, fsynced, renamed into `new/`, and each `new/` folder a
batch touched fsynced once. What to write is decided elsewhere (`transport.delivery.mailbox`); this module only
writes, in the hub's threads or in the mailbox delivery process (`transport.delivery.mailbox_process`), which
imports nothing heavier than this.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

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


WRITERS = 4  # threads writing one batch side by side: fsyncs of different files overlap on the disk
PER_WRITER = 4  # copies a thread is given at least: below that, handing work to a thread costs more CPU than
# overlapping the fsyncs saves time


async def write_side_by_side(copies: list[Copy]) -> list[str]:
    """`write_copies` on up to WRITERS threads, in order; per copy "" or its error."""
    size = max(PER_WRITER, -(-len(copies) // WRITERS))
    chunks = [copies[i:i + size] for i in range(0, len(copies), size)]
    parts = await asyncio.gather(*(asyncio.to_thread(write_copies, c) for c in chunks))
    return [error for part in parts for error in part]


def write_copies(copies: list[Copy]) -> list[str]:
    """Write each copy to `tmp/`, fsync it, rename it into `new/`; then fsync each `new/` folder touched once,
    so N copies cost N + (folders) fsyncs, not 2N. Blocking: run it off the event loop. Per copy "" or why it
    could not be written; a folder whose fsync fails raises."""
    touched: set[str] = set()
    errors = []
    for c in copies:
        try:
            _write_copy(c.tmp, c.parts, c.spool)
            os.rename(c.tmp, c.final)
        except OSError as e:
            errors.append(f"{e.strerror or e}")
            continue
        touched.add(os.path.dirname(c.final))
        errors.append("")
    for folder in touched:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return errors


def _write_copy(path: str, parts: list[bytes], spool: Spool | None) -> None:
    """A copy's file, fsynced: what is in memory in one `writev` (no buffer, no terminal check of a Python
    file), then a spooled body."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        written = os.writev(fd, parts)
        rest = memoryview(b"".join(parts))[written:] if written < sum(map(len, parts)) else b""
        while rest:  # a short write (rare for a file): the remainder
            rest = rest[os.write(fd, rest):]
        if spool is not None:
            with open(spool.path, "rb") as body, open(fd, "wb", closefd=False) as out:
                shutil.copyfileobj(body, out, 1 << 20)
        os.fsync(fd)
    finally:
        os.close(fd)
