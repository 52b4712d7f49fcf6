"""Retry, expiry and delay notification for queued messages, and the running hub's view of admin changes.

Fresh messages go from the categorizer straight to a delivery queue in memory. Everything that has to wait
(a transient delivery failure, a categorizer Defer, a message resubmitted by an administrator) waits in the
database with a `next_attempt` time, and this scheduler's tick hands it back when it is due. The tick also
fails messages older than MessageExpirationTimeout (`550 4.4.7 QUEUE.Expired`, with an NDR), sends a delay
notice once a message has waited DelayNotificationTimeout, and notices `transport queue …` commands (the admin epoch).
Every tick reads the time from the store's clock (the hub's), so what is due is decided on one clock.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Callable

from transport.core.delivery import DeliveryQueue
from transport.core.tracking import TrackingEvent

from .store import SUBMISSION, QueueStatus, QueueStore, StoredItem

if TYPE_CHECKING:
    from transport.core.config import QueueSettings
    from transport.core.dsn_params import Notifier
    from transport.core.mailitem import MailItem
    from transport.core.tracking import TrackingLog

__all__ = ["QueueScheduler", "EXPIRED"]

log = logging.getLogger("queues.scheduler")

EXPIRED = "550 4.4.7 QUEUE.Expired; message expired"
DELAYED = "400 4.4.7 Message delayed"


class QueueScheduler:
    """One task, and the registry of delivery queues by next hop.

    `dispatch` hands a delivery item to the queue registered for its next hop (False: the queue is full or
    suspended, or no queue serves that next hop, and the item stays in the store). Delivery queues hold a
    bounded number of messages in memory; what does not fit stays Ready in the store (`overflow`) and is
    handed over as the queue drains, so memory stays flat however far delivery falls behind. `resubmit` gives a
    message to the categorizer; `forget_submissions` empties the categorizer's in-memory feed.
    """

    def __init__(self, store: QueueStore, settings: "QueueSettings", tracking: "TrackingLog",
                 resubmit: Callable[["MailItem"], None], forget_submissions: Callable[[], None],
                 notifier: "Notifier | None" = None) -> None:
        self.store = store
        self.settings = settings
        self.tracking = tracking
        self.resubmit = resubmit
        self.forget_submissions = forget_submissions
        self.notifier = notifier  # sends the expiry NDRs and delay notices (None: tracking rows only)
        self.queues: dict[str, DeliveryQueue] = {}  # next hop → its delivery queue
        self.overflow: set[str] = set()  # delivery queues with Ready items the store holds but memory does not
        self.inflight: set[int] = set()  # queue item ids some delivery queue holds in memory
        self.suspended: set[str] = set()  # queues an administrator suspended (as of the last tick)
        self.ticks = 0  # ticks completed: "the scheduler has looked at the queues since" (tests wait on it)
        self._epoch = -1

    # -- the registry -----------------------------------------------------------------------------------
    def register(self, queue: DeliveryQueue) -> None:
        self.queues[queue.next_hop] = queue

    def dispatch(self, next_hop: str, item_id: int, item: "MailItem", recipients: list[str],
                 recovered: bool = False) -> bool:
        """Hand a queue item to its delivery queue in memory; False leaves it Ready in the store for later.
        `recovered`: the item was read back from the store (see DeliveryQueue.push)."""
        if item_id in self.inflight:
            return True  # already there (the categorizer and a refill can both reach it)
        queue = self.queues.get(next_hop)
        if queue is None or next_hop in self.suspended:
            return False  # no route served here (Unreachable), or dispatched when the queue is resumed
        if queue.room <= 0:
            self.overflow.add(next_hop)
            return False
        self.inflight.add(item_id)
        queue.push(item_id, item, recipients, recovered)
        return True

    @property
    def idle(self) -> bool:
        return all(q.idle for q in self.queues.values())

    # -- what delivery queues report --------------------------------------------------------------------
    def retry_delay(self, attempts: int) -> float:
        """Exchange's schedule: TransientFailureRetryCount quick retries, then the outbound interval."""
        s = self.settings
        if attempts <= s.transient_failure_retry_count:
            return s.transient_failure_retry_interval
        return s.outbound_connection_failure_retry_interval

    async def defer(self, item_id: int, recipients: list[str], error: str) -> None:
        """A delivery attempt failed transiently: wait in Retry for the next slot on the schedule."""
        self.inflight.discard(item_id)
        await self.store.retry_later(item_id, recipients, error, self.retry_delay)

    async def complete(self, item_ids: list[int]) -> None:
        """Delivery items done for good (delivered, or failed with an NDR)."""
        await self.store.complete(item_ids)
        self.inflight.difference_update(item_ids)

    # -- the tick ---------------------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("queue scheduler tick failed")
            self.ticks += 1
            await asyncio.sleep(self.settings.admin_poll_interval)

    async def tick(self) -> None:
        epoch = self.store.admin_epoch()
        changed = epoch != self._epoch
        first = self._epoch == -1  # at start-up Hub._recover has already fed back every Ready item
        if changed and not first:
            self.forget_submissions()
            for queue in self.queues.values():
                self.inflight.difference_update(queue.drain())
            self.overflow |= self.store.delivery_queues()
            log.info("queue administration changed the queues; re-reading them")
        self._epoch = epoch
        self.suspended = self.store.suspended_queues()
        now = self.store.clock()
        # Ready twice = categorized and delivered twice: what is due is read before this tick's reports (NDRs,
        # delay notices) join the Submission queue, since they go to the categorizer as they are submitted
        due = self.store.due(now, changed and not first)
        removed = await self._remove_with_ndr() if changed else set()  # only an admin change marks items so
        gone = removed | await self._expire(now)
        await self._notify_delays(now)
        await self._dispatch_due([s for s in due if s.id not in gone])

    def for_categorizer(self, stored: StoredItem) -> "MailItem | None":
        """The message of a Submission item, with just the item's recipients, none routed yet."""
        item = self.store.load_message(stored.message)
        if item is not None:
            item.recipients = [r for r in item.recipients if r.address in stored.recipients]
            for r in item.recipients:
                r.next_hop = ""
        return item

    def refill(self, next_hop: str) -> None:
        """Hand a delivery queue the Ready items it has room for that are not in memory (oldest first)."""
        queue = self.queues.get(next_hop)
        if queue is None or queue.room <= 0 or next_hop in self.suspended:
            return
        wanted = queue.room + len(self.inflight)  # the in-memory ones come back too, and are skipped
        rows = self.store.ready(next_hop, wanted)
        for stored in rows:
            if stored.id in self.inflight:
                continue
            item = self.store.load_message(stored.message)
            if item is not None and not self.dispatch(stored.queue, stored.id, item, stored.recipients, recovered=True):
                return  # full again: the queue stays marked as overflowing
        if len(rows) < wanted:  # the store has no more than that: caught up
            self.overflow.discard(next_hop)

    async def _dispatch_due(self, due: list[StoredItem]) -> None:
        """Due retries, Submission items an administrator sent back, and what overflowed a full queue."""
        for stored in due:
            if stored.queue in self.suspended or stored.id in self.inflight:
                continue
            if stored.queue != SUBMISSION:
                item = self.store.load_message(stored.message)
                if item is not None:
                    self.dispatch(stored.queue, stored.id, item, stored.recipients, recovered=True)
                continue
            if stored.status == QueueStatus.RETRY:  # Ready again, so the next tick does not hand it over twice
                await self.store.update_item(stored.id, status=QueueStatus.READY)
            item = self.for_categorizer(stored)
            if item is not None:
                self.resubmit(item)
        for next_hop in list(self.overflow):
            self.refill(next_hop)

    def _failing(self, stored: StoredItem, response: str) -> "MailItem | None":
        """The message of a queue item with just the item's recipients, each carrying `response`."""
        item = self.store.load_message(stored.message)
        if item is not None:
            item.recipients = [r for r in item.recipients if r.address in stored.recipients]
            for r in item.recipients:
                r.response = response
        return item

    async def _remove_with_ndr(self) -> set[int]:
        """Items an administrator removed with -WithNDR (PendingRemove, the reason in last_error); their ids. One
        being delivered right now is left to its delivery, which settles it either way."""
        rows = [s for s in self.store.items("status=?", (QueueStatus.PENDING_REMOVE,)) if s.id not in self.inflight]
        return await self._fail(rows, "ADMIN", lambda s: (s.last_error, "Remove-Message -WithNDR"))

    async def _expire(self, now: float) -> set[int]:
        rows = [s for s in self.store.expired(now - self.settings.message_expiration_timeout)
                if s.id not in self.inflight]
        return await self._fail(rows, "QUEUE", lambda s: (EXPIRED, f"last error: {s.last_error}" if s.last_error else ""))

    async def _fail(self, rows: list[StoredItem], source: str, why: Callable[[StoredItem], tuple[str, str]]) -> set[int]:
        """Queue items that fail for good: a FAIL row and an NDR for their recipients, then gone from the store
        (in that order, as a delivery queue does: the NDR may attach a spooled body the removal deletes). `why`
        gives each item's reply and the tracking row's note. Returns the items' ids."""
        for stored in rows:
            response, note = why(stored)
            item = self._failing(stored, response)
            if item is None:
                continue
            self.tracking.log(TrackingEvent.FAIL, item, source, stored.recipients, response, source_context=stored.queue,
                              custom_data=note)
            if self.notifier is not None:
                await self.notifier.ndr(item, item.recipients)
        if rows:
            await self.store.complete([s.id for s in rows])
        return {s.id for s in rows}

    async def _notify_delays(self, now: float) -> None:
        for stored in self.store.delayed(now - self.settings.delay_notification_timeout):
            await self.store.update_item(stored.id, delay_notified=1)
            item = self._failing(stored, stored.last_error or DELAYED)
            if item is None:
                continue
            if self.notifier is not None:
                await self.notifier.delay(item, item.recipients)
