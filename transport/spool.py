"""Large messages on disk, not in memory: the body of a DATA over the spool threshold goes to a file as it arrives.

The header block stays in memory (agents read and edit it there); the body is unstuffed (RFC 5321 §4.5.2: a
line's leading dot removed) chunk by chunk and written to `<data root>/queue/spool/`. Once the message is
queued the file belongs to the queue store, which deletes it with the message; a message that is refused or
cut off takes its file with it. So ten 30 MB messages at once cost the hub a few megabytes of buffers each, not
several copies of 30 MB.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import uuid
from pathlib import Path
from typing import Callable

from .core.headers import header_end
from .core.mailitem import Spool

__all__ = ["DotUnstuffer", "SPOOL_THRESHOLD", "SpoolWriter", "give_back_memory", "read_data", "unstuff"]

SPOOL_THRESHOLD = 1 << 20
"""DATA larger than this has its body written to a spool file as it arrives."""

_STUFFED = b"\r\n.."


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to call
        return None


_TRIM = _malloc_trim()


def give_back_memory() -> None:
    """Return freed heap to the system after a large message (glibc keeps it, per thread, otherwise), so the
    hub's memory goes back down once large mail has passed; a few milliseconds, only after large messages."""
    if _TRIM is not None:
        _TRIM(0)


def unstuff(data: bytes | bytearray) -> bytes:
    """Remove the transparency dots of a whole DATA block held in memory."""
    data = bytes(data)
    if data.startswith(b".."):
        data = data[1:]
    return data.replace(_STUFFED, b"\r\n.")


class DotUnstuffer:
    """`unstuff` over a stream cut anywhere: a CRLF and dots split between two pieces are still seen.

    The stream is primed with a CRLF (the first line starts a line too) whose two bytes are dropped from the
    output; the longest end of each piece that could begin a stuffed line is held back for the next piece.
    """

    def __init__(self, at_line_start: bool = True) -> None:
        self._held = b"\r\n" if at_line_start else b""
        self._skip = len(self._held)

    def feed(self, piece: bytes | bytearray) -> bytes:
        data = self._held + bytes(piece)
        for k in (3, 2, 1):
            if data.endswith(_STUFFED[:k]):
                self._held, data = data[-k:], data[:-k]
                break
        else:
            self._held = b""
        return self._drop(data.replace(_STUFFED, b"\r\n."))

    def flush(self) -> bytes:
        out, self._held = self._held, b""
        return self._drop(out)

    def _drop(self, out: bytes) -> bytes:
        if self._skip:
            n = min(self._skip, len(out))
            out, self._skip = out[n:], self._skip - n
        return out


class SpoolWriter:
    """One large message's body being written; `finish()` makes it durable and returns its `Spool`."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{uuid.uuid4().hex}.body"
        self._file = open(self.path, "wb")
        self._unstuff = DotUnstuffer()
        self.size = 0

    def write(self, stuffed: bytes | bytearray) -> None:
        out = self._unstuff.feed(stuffed)
        self._file.write(out)
        self.size += len(out)

    async def finish(self, durable: bool) -> Spool:
        tail = self._unstuff.flush()
        self._file.write(tail)
        self.size += len(tail)
        self._file.flush()
        if durable:
            await asyncio.to_thread(os.fsync, self._file.fileno())
        self._file.close()
        return Spool(self.path, self.size)

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


async def read_data(reader: asyncio.StreamReader, limit: int, threshold: int, folder: Path,
                    durable: bool) -> tuple[bytes, Spool | None] | None:
    """DATA up to CRLF.CRLF, and nothing else ends it (no smuggling); None when it is over `limit` (read to
    its end all the same, and dropped). Past `threshold` bytes the header block stays in memory and the body
    goes to a spool file in `folder`. IncompleteReadError when the client goes mid-DATA (no file is left)."""
    buf = bytearray()
    writer: SpoolWriter | None = None
    total = 0
    last = b""  # the stream's last bytes before this piece, to see a CRLF just before the final ".\r\n"
    too_big = ended = False
    try:
        while True:
            try:
                chunk = await reader.readuntil(b".\r\n")
                ended = total + len(chunk) == 3 or (last + chunk)[-5:-3] == b"\r\n"
            except asyncio.LimitOverrunError as e:
                chunk, ended = await reader.read(e.consumed), False
            total += len(chunk)
            last = (last + chunk)[-4:]
            if total > limit + 5:
                too_big = True
                buf.clear()
                if writer is not None:
                    writer.discard()
                    writer = None
            elif writer is not None:
                writer.write(chunk[:-3] if ended else chunk)
            elif not too_big:
                buf += chunk
                if not ended and len(buf) > threshold:  # keep the header block, send the rest to a file
                    end = header_end(buf)
                    writer = SpoolWriter(folder)
                    writer.write(buf[end:])
                    buf[:] = unstuff(buf[:end])
            if ended:
                break
    finally:
        if writer is not None and not ended:  # the client went, or the session was cancelled, mid-DATA
            writer.discard()
    if too_big:
        return None
    if writer is not None:
        return bytes(buf), await writer.finish(durable)
    return unstuff(buf[:-3]), None
