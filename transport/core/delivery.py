"""A delivery queue, as the scheduler and the hub see it: one per next hop, behind one small interface.

The mailbox queue (Maildir delivery) is one; the send connectors' SMTP queues and the drop directory are others. Each
registers with the queue scheduler under its next hop; the categorizer asks the routing table for a
recipient's next hop, and a next hop no queue serves waits in Unreachable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .mailitem import MailItem

__all__ = ["DeliveryQueue"]


class DeliveryQueue(Protocol):
    """Holds a bounded number of queue items in memory and delivers them; the store keeps the rest."""

    next_hop: str
    """The key the categorizer routes to and the queue database files the items under."""
    delivery_type: str
    """Exchange's DeliveryType for Get-Queue (SmtpDeliveryToMailbox, SmartHostConnectorDelivery, …)."""

    @property
    def room(self) -> int:
        """How many more items it takes in memory now."""

    @property
    def idle(self) -> bool:
        """Nothing waiting or being delivered."""

    def push(self, item_id: int, item: "MailItem", recipients: list[str], recovered: bool = False) -> None:
        """Take one queue item (the message and the recipients it is for at this next hop). `recovered`: it was
        read back from the store, so part of it may have been delivered before a crash: deliver only what is not."""

    def drain(self) -> list[int]:
        """Drop what waits in memory (an administrator changed the queues); the ids dropped."""

    async def run(self) -> None:
        """Deliver until cancelled."""
