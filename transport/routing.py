"""The routing table: which next hop serves a recipient.

Recipients with a mailbox here go to the mailbox delivery queue; every other recipient goes to the queue of the
send connector whose address space matches its domain most specifically (`transport.delivery.connectors`), or
waits in Unreachable when none does. A routing agent's override (OnResolvedMessage `set_routing_override`) wins.
A next hop no delivery queue is registered for also waits in Unreachable (the categorizer asks the scheduler's
registry).
"""

from __future__ import annotations

from queues.store import UNREACHABLE

from .core.config import DomainType, TransportConfig
from .core.mailitem import Recipient
from .delivery.connectors import SendConnectors
from .delivery.mailbox import MAILBOX_QUEUE

__all__ = ["RoutingTable"]


class RoutingTable:
    def __init__(self, config: TransportConfig, connectors: SendConnectors | None = None) -> None:
        """`connectors` opens the send connectors' queues as routes need them (the hub); without it the table only
        names the next hop (a dry run: `transport trace`)."""
        self.config = config
        self.connectors = connectors

    def is_unknown(self, recipient: Recipient) -> bool:
        """A recipient in an authoritative domain with no mailbox (RESOLVER.ADR.ExRecipNotFound)."""
        domain = self.config.accepted_domain(recipient.domain)
        return (domain is not None and domain.domain_type is DomainType.AUTHORITATIVE
                and self.config.mailbox(recipient.address) is None)

    def next_hop(self, recipient: Recipient) -> str:
        if self.config.mailbox(recipient.address) is not None:
            return MAILBOX_QUEUE
        if self.connectors is not None:
            return self.connectors.next_hop(recipient.domain) or UNREACHABLE
        connector = self.config.send_connector(recipient.domain)
        return connector.queue_for(recipient.domain) if connector is not None else UNREACHABLE
