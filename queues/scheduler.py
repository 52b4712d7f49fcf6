"""Retry, expiry and delay notification for queued messages, and the running hub's view of admin changes.

Fresh messages go from the categorizer straight to a delivery queue in memory. Everything that has to wait
(a transient delivery failure, a categorizer Defer, a message resubmitted by an administrator) waits in the
database with a `next_attempt` time, and this scheduler's tick hands it back when it is due. The tick also
fails messages older than MessageExpirationTimeout (`550 4.4.7 QUEUE.Expired`), records a delay DSN once a
message has waited DelayNotificationTimeout, and notices `transport queue …` commands (the admin epoch).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from typing import TYPE_CHECKING, Callable

from .store import POISON, SUBMISSION, UNREACHABLE, QueueStore, StoredItem

if TYPE_CHECKING:
    from transport.config import QueueSettings
    from transport.mailitem import MailItem
    from transport.tracking import TrackingLog

__all__ = ["QueueScheduler", "EXPIRED"]

log = logging.getLogger("queues.scheduler")

EXPIRED = "550 4.4.7 QUEUE.Expired; message expired"
DELAYED = "400 4.4.7 Message delayed"

Dispatch = Callable[[str, int, "MailItem", list[str]], bool]


class QueueScheduler:
    """One task. `dispatch` hands a delivery item to its queue (False: the queue is full or suspended),
    `resubmit` a message to the categorizer, `drain` empties the in-memory queues, `room` says how many more
    items a delivery queue takes in memory. Delivery queues hold a bounded number of messages in memory; what
    does not fit stays Ready in the store (`overflow`) and is handed over as the queue drains, so memory stays
    flat however far delivery falls behind."""

    def __init__(self, store: QueueStore, settings: "QueueSettings", tracking: "TrackingLog",
                 dispatch: Dispatch, resubmit: Callable[["MailItem"], None], drain: Callable[[], list[int]],
                 room: Callable[[str], int]) -> None:
        self.store = store
        self.room = room
        self.overflow: set[str] = set()  # delivery queues with Ready items the store holds but memory does not
        self.settings = settings
        self.tracking = tracking
        self.dispatch = dispatch
        self.resubmit = resubmit
        self.drain = drain
        self.inflight: set[int] = set()  # queue item ids some delivery queue holds in memory
        self.suspended: set[str] = set()  # queues an administrator suspended (as of the last tick)
        self._epoch = -1

    def retry_delay(self, attempts: int) -> float:
        """Exchange's schedule: TransientFailureRetryCount quick retries, then the outbound interval."""
        s = self.settings
        if attempts <= s.transient_failure_retry_count:
            return s.transient_failure_retry_interval
        return s.outbound_connection_failure_retry_interval

    async def defer(self, item_id: int, recipients: list[str], error: str) -> None:
        """A delivery attempt failed transiently: wait in Retry for the next slot on the schedule."""
        self.inflight.discard(item_id)
        now = time.time()

        def op(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT attempts FROM queue_items WHERE id=?", (item_id,)).fetchone()
            if row is None:  # removed by an administrator meanwhile
                return
            attempts = row[0] + 1
            conn.execute("UPDATE queue_items SET status='Retry', attempts=?, recipients=?, next_attempt=?,"
                         " last_error=?, first_attempt=COALESCE(first_attempt, ?) WHERE id=?",
                         (attempts, json.dumps(recipients), now + self.retry_delay(attempts), error, now, item_id))

        await self.store.run(op)

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("queue scheduler tick failed")
            await asyncio.sleep(self.settings.admin_poll_interval)

    async def tick(self) -> None:
        rows = self.store.read("SELECT value FROM control WHERE key='admin_epoch'")
        epoch = rows[0][0] if rows else 0
        changed = epoch != self._epoch
        first = self._epoch == -1  # at start-up Hub._recover has already fed back every Ready item
        if changed and not first:
            for item_id in self.drain():
                self.inflight.discard(item_id)
            self.overflow |= {r[0] for r in self.store.read(
                "SELECT DISTINCT queue FROM queue_items WHERE queue NOT IN (?, ?, ?)", (SUBMISSION, UNREACHABLE, POISON))}
            log.info("queue administration changed the queues; re-reading them")
        self._epoch = epoch
        self.suspended = {r[0] for r in self.store.read("SELECT name FROM queues WHERE status='Suspended'")}
        now = time.time()
        await self._expire(now)
        await self._notify_delays(now)
        await self._dispatch_due(now, changed and not first)  # Ready twice = categorized and delivered twice

    def for_categorizer(self, stored: StoredItem) -> "MailItem | None":
        """The message of a Submission item, with just the item's recipients, none routed yet."""
        item = self.store.load_message(stored.message)
        if item is not None:
            item.recipients = [r for r in item.recipients if r.address in stored.recipients]
            for r in item.recipients:
                r.next_hop = ""
        return item

    def refill(self, queue: str, limit: int) -> None:
        """Hand a delivery queue the Ready items it has room for that are not in memory (oldest first)."""
        wanted = limit + len(self.inflight)  # the in-memory ones come back too, and are skipped
        rows = self.store.items("queue=? AND status='Ready'", (queue,), wanted)
        for stored in rows:
            if stored.id in self.inflight:
                continue
            item = self.store.load_message(stored.message)
            if item is not None and not self.dispatch(stored.queue, stored.id, item, stored.recipients):
                return  # full again: the queue stays marked as overflowing
        if len(rows) < wanted:  # the store has no more than that: caught up
            self.overflow.discard(queue)

    async def _dispatch_due(self, now: float, include_ready: bool) -> None:
        """Due retries, Submission items an administrator sent back, and what overflowed a full queue."""
        submission = "status='Retry' OR status='Ready'" if include_ready else "status='Retry'"
        for stored in self.store.items(f"next_attempt <= ? AND ((queue=? AND ({submission}))"
                                       " OR (queue NOT IN (?, ?, ?) AND status='Retry'))",
                                       (now, SUBMISSION, SUBMISSION, UNREACHABLE, POISON)):
            if stored.queue in self.suspended or stored.id in self.inflight:
                continue
            if stored.queue != SUBMISSION:
                item = self.store.load_message(stored.message)
                if item is not None:
                    self.dispatch(stored.queue, stored.id, item, stored.recipients)
                continue
            if stored.status == "Retry":  # Ready again, so the next tick does not hand it over twice
                await self.store.update_item(stored.id, status="Ready")
            item = self.for_categorizer(stored)
            if item is not None:
                self.resubmit(item)
        for queue in list(self.overflow):
            room = self.room(queue)
            if queue not in self.suspended and room > 0:
                self.refill(queue, room)

    async def _expire(self, now: float) -> None:
        cutoff = now - self.settings.message_expiration_timeout
        rows = [r for r in self.store.read(
            "SELECT q.id, q.message, q.recipients, q.queue FROM queue_items q JOIN messages m ON m.id=q.message"
            " WHERE q.queue != ? AND q.status != 'Active' AND m.received_at < ?", (POISON, cutoff))
            if r[0] not in self.inflight]
        for _, message_id, recipients, queue in rows:
            item = self.store.load_message(message_id)
            if item is not None:
                self.tracking.log("FAIL", item, "QUEUE", json.loads(recipients), EXPIRED, source_context=queue)
        if rows:
            await self.store.complete([r[0] for r in rows])

    async def _notify_delays(self, now: float) -> None:
        cutoff = now - self.settings.delay_notification_timeout
        rows = self.store.read(
            "SELECT q.id, q.message, q.recipients, q.last_error FROM queue_items q JOIN messages m ON m.id=q.message"
            " WHERE q.status='Retry' AND q.delay_notified=0 AND m.received_at < ?", (cutoff,))
        for item_id, message_id, recipients, last_error in rows:
            item = self.store.load_message(message_id)
            if item is not None:
                self.tracking.log("DSN", item, "DSN", json.loads(recipients), DELAYED,
                                  custom_data=f"delay notification; last error: {last_error}")
            await self.store.update_item(item_id, delay_notified=1)
