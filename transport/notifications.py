"""Notifications: the one component that tells senders what became of their mail (NDRs, delay, success).

Built once by the hub (`hub.notifications`) and handed to whatever fails, delays or delivers a recipient: the
categorizer (unknown recipients), the queue scheduler (expiry, delay, `message remove --with-ndr`), the
delivery queues (5xx replies, success notices), the Pickup directory (badmail) and agents that fail
recipients. Each report is an RFC 3464 message (`transport.dsn`) from the postmaster with the null reverse
path, to the original envelope sender, submitted through the one submission path with source DSN and tracked
as a DSN row on the original message.

No report is due, and None is returned, for a message with the null sender or one that is itself a report
(so reports never bounce in a loop), or when every recipient's NOTIFY rules it out (NEVER; or FAILURE, DELAY,
SUCCESS not asked for). A report that cannot be made is logged and never raised into the caller's delivery
path.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from .core.clock import Clock, real_time
from .core.config import TransportConfig
from .core.dsn_params import Notify, wants
from .core.mailitem import MailItem, Recipient, Source
from .core.tracking import TrackingEvent, TrackingLog
from .dsn import DsnAction, ReportedRecipient, attaches_whole, build_report, is_report

__all__ = ["Notifications"]

log = logging.getLogger("transport.notifications")

Submit = Callable[[MailItem, Source], Awaitable[int]]


class Notifications:
    """Makes and submits delivery status notifications (see the module docstring); implements
    `transport.core.dsn_params.Notifier`. Reports are dated on `clock`, the hub's."""

    def __init__(self, config: TransportConfig, submit: Submit, tracking: TrackingLog, clock: Clock = real_time) -> None:
        self.config = config
        self._submit = submit
        self.tracking = tracking
        self.clock = clock

    async def ndr(self, item: MailItem, recipients: list[Recipient], remote_mta: str = "") -> int | None:
        """A non-delivery report for recipients that failed for good (each `response` is the reply that failed
        it, with its enhanced status code; `remote_mta`: the next hop that gave it, if one did)."""
        return await self._report(item, [ReportedRecipient(r, DsnAction.FAILED, remote_mta=remote_mta)
                                         for r in recipients if wants(r, Notify.FAILURE)], DsnAction.FAILED)

    async def delay(self, item: MailItem, recipients: list[Recipient]) -> int | None:
        """A delay notice (each `response` is the last error) for recipients still being retried until expiry."""
        if not self.config.dsn.delay_dsn_enabled:
            return None
        until = item.received_at + self.config.queue.message_expiration_timeout
        return await self._report(item, [ReportedRecipient(r, DsnAction.DELAYED, until) for r in recipients
                                         if wants(r, Notify.DELAY)], DsnAction.DELAYED)

    async def success(self, item: MailItem, recipients: list[Recipient], relayed: bool = False,
                      remote_mta: str = "") -> int | None:
        """A delivered notice (or relayed: handed to a next hop that does not pass DSN requests on) for the
        recipients that asked NOTIFY=SUCCESS."""
        action = DsnAction.RELAYED if relayed else DsnAction.DELIVERED
        return await self._report(item, [ReportedRecipient(r, action, remote_mta=remote_mta) for r in recipients
                                         if wants(r, Notify.SUCCESS)], action)

    async def _report(self, item: MailItem, lines: list[ReportedRecipient], action: DsnAction) -> int | None:
        if not lines or is_report(item):
            return None
        try:
            args = (item, lines, action, self.config.receive.fqdn, self.config.postmaster, self.config.dsn.max_original_size)
            if item.spool is not None and attaches_whole(item, action, self.config.dsn.max_original_size):
                raw = await asyncio.to_thread(build_report, *args, date=self.clock())  # reads the spooled body
            else:
                raw = build_report(*args, date=self.clock())
            report = MailItem(sender="", recipients=[Recipient(item.sender)], raw=raw)
            report_id = await self._submit(report, Source.DSN)
        except Exception:
            log.exception("the %s report about message %s could not be made", action.value, item.internal_id)
            return None
        self.tracking.log(TrackingEvent.DSN, item, "DSN", [line.recipient.address for line in lines],
                          "; ".join(dict.fromkeys(line.recipient.response for line in lines if line.recipient.response)),
                          reference=report.message_id, custom_data=f"{action.value} report InternalId={report_id}")
        return report_id
