"""The channel between the hub's process and one of its receive worker processes (or its mailbox delivery process):
batches of messages, pickled, over a Unix socket pair.

Both ends are this program's own processes (the hub starts its workers and hands each one end of a socketpair),
so pickle is safe here and keeps a mail item's hand-over cheap. What one side sends in one turn of its event
loop leaves in one frame (a 4-byte length, then the pickled list of messages): a busy worker costs the hub one
read per batch, not one per submitted message or log row.
"""

from __future__ import annotations

import asyncio
import enum
import pickle
import struct
from typing import Any, Callable

from .core.errors import TransportError

__all__ = ["Channel", "ChannelClosed", "Frame"]

_LENGTH = struct.Struct("!I")


class Frame(enum.IntEnum):
    """What a message is; its other elements follow in this order."""

    # the hub → a worker
    INIT = 1  # settings: dict (the configuration, the listening sockets' descriptors, …)
    SUBMITTED = 2  # seq, internal id (None: not queued), error text (None: no error), back pressure on
    PRESSURE = 3  # back pressure on
    STOP = 4  # grace seconds
    # a worker → the hub
    READY = 10  # pid
    SUBMIT = 11  # seq, mail item
    SUBMIT_AGENT = 12  # seq, mail item, agent name, causing mail item or None
    ROW = 13  # log prefix, row
    COUNTS = 14  # {counter set: {name: increment}}, {agent position: (calls, errors, time ns)}
    # the hub ↔ the mailbox delivery process (`transport.delivery.mailbox_process`)
    WRITE = 20  # seq, copies (`transport.delivery.mailbox.Copy`)
    WRITTEN = 21  # seq, per copy "" or its error


class ChannelClosed(TransportError):
    """The other process closed the channel or died."""


class Channel:
    """One end: `send` queues a message for this turn's frame; `receive` waits for the next frame's messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 unsendable: Callable[[tuple[Any, ...], Exception], None] | None = None) -> None:
        self._reader = reader
        self._writer = writer
        self._out: list[tuple[Any, ...]] = []
        self.unsendable = unsendable  # told of a message that cannot be pickled (an agent's odd stamp), not sent

    def send(self, *message: Any) -> None:
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(message)

    def _flush(self) -> None:
        batch, self._out = self._out, []
        if not batch or self._writer.is_closing():
            return
        try:
            data = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # one message cannot go: send the others, say which could not
            batch = [m for m in batch if self._picklable(m)]
            data = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        self._writer.write(_LENGTH.pack(len(data)) + data)

    def _picklable(self, message: tuple[Any, ...]) -> bool:
        try:
            pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            if self.unsendable is not None:
                self.unsendable(message, e)
            return False
        return True

    async def drain(self) -> None:
        """Send what is queued now and wait until the socket took it."""
        self._flush()
        try:
            await self._writer.drain()
        except (ConnectionError, RuntimeError) as e:
            raise ChannelClosed(str(e)) from None

    async def receive(self) -> list[tuple[Any, ...]]:
        try:
            (length,) = _LENGTH.unpack(await self._reader.readexactly(_LENGTH.size))
            return pickle.loads(await self._reader.readexactly(length))
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            raise ChannelClosed("the other process closed the channel") from e

    def close(self) -> None:
        self._flush()
        self._writer.close()
