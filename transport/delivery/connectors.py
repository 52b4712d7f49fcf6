"""The send connectors' delivery queues, opened as the categorizer first routes mail to a next hop.

A smart host or drop-directory connector has one queue, named for the connector; DNS routing has one queue per
destination domain, named for the domain, made the first time a recipient there is routed (and at start for
the queues the store still holds items of). Each new queue is registered with the queue scheduler and started.
"""

from __future__ import annotations

from typing import Callable, Iterable

from ..core.config import TransportConfig
from ..core.delivery import DeliveryQueue
from ..core.outbound_config import SendConnector
from .drop import DropDirectoryQueue
from .smtp import Outbound, SmtpDeliveryQueue

__all__ = ["SendConnectors"]


class SendConnectors:
    def __init__(self, config: TransportConfig, outbound: Outbound, start: Callable[[DeliveryQueue], None]) -> None:
        self.config = config
        self.out = outbound
        self._start = start  # registers the queue with the scheduler and runs it

    def next_hop(self, domain: str) -> str | None:
        """The queue of the send connector that serves the domain (opened if new), or None when none does."""
        connector = self.config.send_connector(domain)
        if connector is None:
            return None
        key = connector.queue_for(domain)
        if key not in self.out.scheduler.queues:
            self._open(key, connector)
        return key

    def restore(self, names: Iterable[str]) -> None:
        """Open the queues of next hops the store holds items for (at start, before they are fed back)."""
        by_name = {c.name: c for c in self.config.send_connectors}
        for name in names:
            if name in self.out.scheduler.queues:
                continue
            connector = by_name.get(name) or (self.config.send_connector(name) if "." in name else None)
            if connector is not None and connector.queue_for(name) == name:
                self._open(name, connector)

    def _open(self, key: str, connector: SendConnector) -> None:
        if connector.drop_directory is not None:
            folder = self.config.data_root / connector.drop_directory
            self._start(DropDirectoryQueue(connector, folder, self.out))
        else:
            self._start(SmtpDeliveryQueue(key, connector, self.out))
