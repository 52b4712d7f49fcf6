"""The in-memory side of a delivery queue: a bounded feed of queue items, as the scheduler sees it."""

from __future__ import annotations

import asyncio

from ..core.mailitem import MailItem

__all__ = ["Entry", "QueueFeed"]

Entry = tuple[int, MailItem, list[str], bool]
"""A queue item in memory: its id, the message, the recipients it is for here, whether it came from the store."""


class QueueFeed:
    """`room`, `idle`, `push` and `drain` of the DeliveryQueue protocol over an asyncio queue; subclasses add
    `next_hop`, `delivery_type` and `run`, and count what they hold in `_busy`."""

    capacity = 1024  # queue items held in memory; the rest wait in the store

    def __init__(self) -> None:
        self.feed: asyncio.Queue[Entry] = asyncio.Queue()
        self._busy = 0

    @property
    def room(self) -> int:
        return self.capacity - self.feed.qsize() - self._busy

    @property
    def idle(self) -> bool:
        return self.feed.empty() and not self._busy

    def push(self, item_id: int, item: MailItem, recipients: list[str], recovered: bool = False) -> None:
        self.feed.put_nowait((item_id, item, recipients, recovered))

    def drain(self) -> list[int]:
        """Drop what waits in memory; the queue item ids dropped (the store still has them)."""
        dropped = []
        while not self.feed.empty():
            dropped.append(self.feed.get_nowait()[0])
        return dropped
