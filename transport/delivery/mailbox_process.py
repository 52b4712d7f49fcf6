"""The mailbox delivery process (Exchange's Mailbox Transport Delivery service, a process of its own there too):
it writes the Maildir copies the hub's mailbox delivery queue has planned.

Why a process: creating and fsyncing a file is the kernel's work, and on a slow disk (a virtual machine's, say)
it costs as much CPU as a whole SMTP transaction. Charged to the hub's own process, which owns the queue and
cannot be multiplied, it capped the hub however many receive workers it ran. The hub still decides everything
(folder by SCL, file name, trace lines, the look-up of copies from before a crash, the tracking rows, the queue);
this process only writes what it is handed, made durable as the hub would (`transport.delivery.maildir`), and
answers per copy. It is started with the first batch, over a socket pair (`transport.worker_channel`), and ends
when the hub closes the channel or dies.

Exactly once: a copy's file name is fixed by the message. When the process ends with a batch in hand, the hub
plans that batch again as recovered, so the copies already in a mailbox are found and not written twice, and
writes it itself; the next batch starts a new process.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys

from ..core.errors import TransportError
from ..worker_channel import Channel, ChannelClosed, Frame
from .maildir import Copy, write_side_by_side

__all__ = ["MailboxDeliveryProcess", "DeliveryProcessLost"]

log = logging.getLogger("transport.delivery.mailbox_process")


class DeliveryProcessLost(TransportError):
    """The mailbox delivery process ended (or its channel broke) with a batch of copies in hand."""


class MailboxDeliveryProcess:
    """The hub's end: `await write(copies)` gives per copy "" or its error, or raises DeliveryProcessLost."""

    def __init__(self) -> None:
        self.starts = 0  # processes started (a test kills one and sees the next)
        self._proc: asyncio.subprocess.Process | None = None
        self._channel: Channel | None = None
        self._reader: asyncio.Task | None = None
        self._pending: dict[int, asyncio.Future[list[str]]] = {}
        self._seq = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def write(self, copies: list[Copy]) -> list[str]:
        if self._channel is None:
            await self._start()
        assert self._channel is not None
        answers = []
        for part in _frames(copies):  # a batch of large messages crosses in several frames, not one huge one
            self._seq += 1
            answers.append(self._pending.setdefault(self._seq, asyncio.get_running_loop().create_future()))
            self._channel.send(Frame.WRITE, self._seq, part)
        return [error for errors in await asyncio.gather(*answers) for error in errors]

    async def _start(self) -> None:
        parent, child = socket.socketpair()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "transport.delivery.mailbox_process", str(child.fileno()),
                pass_fds=[child.fileno()], stdin=subprocess.DEVNULL)
        except OSError as e:  # no process (out of memory, a process limit): this batch is written here
            parent.close()
            raise DeliveryProcessLost(f"the mailbox delivery process could not start: {e}") from e
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        self._channel = Channel(reader, writer)
        self._reader = asyncio.create_task(self._read(self._channel), name="mailbox-delivery-process")
        self.starts += 1
        log.debug("mailbox delivery process %d started", self._proc.pid)

    async def _read(self, channel: Channel) -> None:
        try:
            while True:
                for _, seq, errors in await channel.receive():
                    answer = self._pending.pop(seq, None)
                    if answer is not None and not answer.done():
                        answer.set_result(errors)
        except ChannelClosed:
            pass
        finally:
            await self._lost(channel)

    async def _lost(self, channel: Channel) -> None:
        """The process ended or its channel broke: its batches fail (their writers plan them again); the next
        batch starts a new one."""
        if self._channel is channel:
            self._channel = None
        channel.close()
        proc, self._proc = self._proc, None
        if proc is not None:
            await _ended(proc)
        pending, self._pending = self._pending, {}
        for answer in pending.values():
            if not answer.done():
                answer.set_exception(DeliveryProcessLost(
                    f"the mailbox delivery process ended (exit status {proc.returncode if proc else 'unknown'})"))

    async def stop(self, timeout: float = 5.0) -> None:
        """Close the channel: the process finishes the batch in hand and exits (killed after `timeout`)."""
        if self._channel is None:
            return
        proc, self._proc = self._proc, None  # it ends by itself now: not killed as lost
        self._channel.close()
        if proc is not None:
            await _ended(proc, timeout)
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


async def _ended(proc: asyncio.subprocess.Process, grace: float = 2.0) -> None:
    """Wait for the process to end (with its channel closed or broken, it ends by itself); kill it after `grace`.

    Not killed at once: `Process.kill` polls the child first (reaping it), which leaves asyncio's child watcher
    nothing to wait for, so it reports exit status 255 instead of the real one (a SIGKILL's -9, say)."""
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()


FRAME_BYTES = 8 * 1024 * 1024
"""At most this much message data in one frame (unless one copy alone is more)."""


def _frames(copies: list[Copy]) -> list[list[Copy]]:
    parts: list[list[Copy]] = [[]]
    size = 0
    for c in copies:
        n = sum(map(len, c.parts))
        if parts[-1] and size + n > FRAME_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(c)
        size += n
    return parts


async def _serve(fd: int) -> None:
    """The process's end: write each batch handed over, answer, until the hub closes the channel."""
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
    channel = Channel(reader, writer)
    try:
        while True:
            for _, seq, copies in await channel.receive():
                try:
                    errors = await write_side_by_side(copies)
                except OSError as e:  # a syncfs or a folder's fsync: nothing of the batch is known to be on disk
                    errors = [f"{e.strerror or e}"] * len(copies)
                channel.send(Frame.WRITTEN, seq, errors)
    except ChannelClosed:
        pass
    finally:
        channel.close()


if __name__ == "__main__":
    from ..process_setup import EventLoop, loop_factory

    with asyncio.Runner(loop_factory=loop_factory(EventLoop.ASYNCIO)) as runner:
        runner.run(_serve(int(sys.argv[1])))
