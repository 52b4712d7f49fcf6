"""The drop directory: a foreign connector's delivery queue, which writes each message as a file.

Exchange's Foreign connector hands mail for its address spaces to a non-SMTP gateway (a fax server, a legacy
system) by writing it into `DropDirectory`; the gateway picks the files up. Each file here is
`<data root>/<drop_directory>/<internal id>-<queue item>.eml` in the replay format (`transport.core.replay_format`):
X-Sender and one X-Receiver per recipient of this queue, then the message. So a file can be put back through
the Replay directory unchanged, and the hub trusts it there as one it wrote. Files are written aside, fsynced,
then renamed in, so a gateway never reads half a file. With `drop_directory_quota`, once the folder holds that
much a message waits in Retry (`452 4.3.1`) until the gateway has taken files away.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.events import SmtpResponse
from ..core.mailitem import MailItem
from ..core.outbound_config import SendConnector
from ..core.replay_format import serialize
from ..core.tracking import TrackingEvent
from .feed import Entry, QueueFeed

if TYPE_CHECKING:
    from .smtp import Outbound

__all__ = ["DropDirectoryQueue", "QUOTA_EXCEEDED"]

log = logging.getLogger("transport.delivery.drop")

QUOTA_EXCEEDED = SmtpResponse(452, "4.3.1", "Insufficient system resources (drop directory quota exceeded)")


class DropDirectoryQueue(QueueFeed):
    """NonSmtpGatewayDelivery: one queue per foreign connector, named for the connector."""

    def __init__(self, connector: SendConnector, folder: Path, outbound: "Outbound") -> None:
        super().__init__()
        self.next_hop = connector.name
        self.delivery_type = connector.delivery_type
        self.connector = connector
        self.folder = folder
        self.out = outbound

    async def run(self) -> None:
        while True:
            entry = await self.feed.get()
            self._busy = 1
            try:
                await self._deliver(entry)
            except Exception:
                log.exception("writing message %s to %s failed; it stays queued", entry[1].internal_id, self.folder)
            finally:
                self._busy = 0

    async def _deliver(self, entry: Entry) -> None:
        item_id, item, addresses, _ = entry
        copy_for_gateway = copy.copy(item)
        copy_for_gateway.recipients = [copy.copy(r) for r in item.recipients if r.address in addresses]
        try:
            path = await asyncio.to_thread(self._write, item_id, copy_for_gateway)
        except OSError as e:
            error = SmtpResponse(452, "4.3.1", f"Insufficient system resources (drop directory: {e.strerror or e})")
            path = None
        else:
            error = QUOTA_EXCEEDED if path is None else None
        tracking = self.out.tracking
        if error is not None:
            tracking.log(TrackingEvent.DEFER, item, "GATEWAY", addresses, str(error), connector_id=self.next_hop)
            await self.out.scheduler.defer(item_id, addresses, str(error))
            return
        tracking.log(TrackingEvent.SEND, item, "GATEWAY", addresses, "250 2.0.0 Dropped to the foreign connector",
                     connector_id=self.next_hop, source_context=str(self.folder), custom_data=str(path))
        await self.out.scheduler.complete([item_id])
        await self.out.notifier.success(item, copy_for_gateway.recipients, relayed=True)

    def _used(self) -> int:
        return sum(e.stat().st_size for e in os.scandir(self.folder) if e.is_file())

    def _write(self, item_id: int, item: MailItem) -> Path | None:
        """Write the file (blocking); None when the quota leaves no room for it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        data = serialize(item, self.out.fqdn)
        quota = self.connector.drop_directory_quota
        if quota is not None and self._used() + len(data) > quota:
            return None
        final = self.folder / f"{item.internal_id}-{item_id}.eml"
        tmp = self.folder / f".{final.name}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, final)
        return final
