"""The categorizer: takes messages off the Submission queue, resolves and routes their recipients.

Order, as Exchange runs it: OnSubmittedMessage → resolve recipients → OnResolvedMessage → route (pick each
recipient's next hop) → OnRoutedMessage → OnCategorizedMessage → one delivery queue item per next hop.
Before any routing agent runs, the batch is durably marked "in process", so a message that crashes the process
is counted at the next start and, at the poison threshold, isolated in the Poison queue.

Beyond Exchange, when no agent handles a routing event, a message whose recipients all resolve is categorized
as it is queued (`Categorizer.route_ahead`) and committed straight into its delivery queues: the same rows in
the tracking log (RECEIVE, SUBMIT), one commit instead of two.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Container

from queues.scheduler import QueueScheduler
from queues.store import POISON, UNREACHABLE, QueueStore

from .core.config import TransportConfig
from .core.dsn_params import Notifier
from .core.events import Action, CategorizedEvent, Replies, ResolvedEvent, RoutedEvent, RoutingEvent, SubmittedEvent
from .core.mailitem import MailItem, Recipient, RecipientStatus
from .core.pipeline import AgentFailure, Pipeline
from .core.tracking import TrackingEvent, TrackingLog
from .routing import RoutingTable

__all__ = ["Categorizer", "resolve", "route"]

log = logging.getLogger("transport.categorizer")


class Categorizer:
    """One task draining the in-memory Submission feed in batches."""

    def __init__(self, config: TransportConfig, pipeline: Pipeline, store: QueueStore, tracking: TrackingLog,
                 routes: RoutingTable, queues: QueueScheduler, notifier: Notifier) -> None:
        self.config = config
        self.pipeline = pipeline
        self.store = store
        self.tracking = tracking
        self.routes = routes
        self.queues = queues
        self.notifier = notifier
        self.feed: asyncio.Queue[MailItem] = asyncio.Queue()
        self._busy = 0

    def push(self, item: MailItem) -> None:
        self.feed.put_nowait(item)

    @property
    def backlog(self) -> int:
        """Messages waiting for or in categorization: the Submission queue's length as back pressure sees it."""
        return self.feed.qsize() + self._busy

    def drain(self) -> None:
        """Forget what is waiting in memory (it is re-read from the store after an admin change)."""
        while not self.feed.empty():
            self.feed.get_nowait()

    @property
    def idle(self) -> bool:
        return self.feed.empty() and not self._busy

    async def run(self) -> None:
        batch_size = self.config.queue.batch_size
        while True:
            batch = [await self.feed.get()]
            while len(batch) < batch_size and not self.feed.empty():
                batch.append(self.feed.get_nowait())
            self._busy = len(batch)
            try:
                if self.pipeline.has_routing_agents:  # agent code may crash the process: mark the batch first
                    await self.store.mark_in_process([i.internal_id for i in batch])
                # Side by side, so the batch's queue writes share one group commit.
                results = await asyncio.gather(*(self._categorize(i) for i in batch), return_exceptions=True)
            except Exception:
                log.exception("categorizer batch failed; the messages stay in the Submission queue")
            else:
                for item, result in zip(batch, results):
                    if isinstance(result, Exception):
                        log.error("categorizing message %s failed; it stays in the Submission queue: %s",
                                  item.internal_id, result, exc_info=result)
            finally:
                self._busy = 0

    async def _categorize(self, item: MailItem) -> None:
        self.tracking.log(TrackingEvent.SUBMIT, item, "QUEUE", source_context="Submission")
        try:
            if await self._event(SubmittedEvent(item)):
                return
            unknown = resolve(item, self.routes)
            if await self._event(ResolvedEvent(item)):
                return
            route(item, self.routes, self.queues.queues)
            if await self._event(RoutedEvent(item)) or await self._event(CategorizedEvent(item)):
                return
        except AgentFailure as failure:
            await self._crashed(item, str(failure))
            return
        deliveries = _deliveries(item)
        ids = await self.store.route(item, deliveries)
        for r in unknown:  # those failed on the way in have their FAIL row from the submission path
            self.tracking.log(TrackingEvent.FAIL, item, "ROUTING", [r.address], r.response)
        failed = [r for r in item.recipients if r.status is RecipientStatus.FAILED]  # here, or by a receive agent
        if failed:
            await self.notifier.ndr(item, failed)
        self._dispatch(item, deliveries, ids)

    def route_ahead(self, item: MailItem) -> dict[str, list[str]] | None:
        """The delivery queues of a message about to be queued (next hop → recipients), when its categorization
        can be done before its first commit: no agent handles a routing event, no recipient has failed and every
        one resolves, so nothing but routing can happen between Submission and the delivery queues. The
        submission path then commits it straight into them (`QueueStore.enqueue_routed`): one commit per message,
        not two. None: it goes through the Submission queue and `run`, as in Exchange."""
        if self.pipeline.has_routing_agents or not item.recipients or any(
                r.status is not RecipientStatus.READY or self.routes.is_unknown(r) for r in item.recipients):
            return None
        route(item, self.routes, self.queues.queues)
        return _deliveries(item)

    def routed(self, item: MailItem, deliveries: dict[str, list[str]], ids: dict[str, int]) -> None:
        """A message committed straight into its delivery queues (`route_ahead`): tracked as submitted and handed to
        them."""
        self.tracking.log(TrackingEvent.SUBMIT, item, "QUEUE", source_context="Submission")
        self._dispatch(item, deliveries, ids)

    def _dispatch(self, item: MailItem, deliveries: dict[str, list[str]], ids: dict[str, int]) -> None:
        for queue, rcpts in deliveries.items():
            if queue == UNREACHABLE:
                self.tracking.log(TrackingEvent.DEFER, item, "ROUTING", rcpts, "451 4.4.0 Unreachable: no route to next hop",
                                  source_context="Unreachable")
            self.queues.dispatch(queue, ids[queue], item, rcpts)

    async def _event(self, event: RoutingEvent) -> bool:
        """Run a routing event; True when an agent ended the message's categorization here."""
        if not self.pipeline.has(event.name):
            return False
        await self.pipeline.run(event)
        if event.action is Action.DELETE:
            self.tracking.log(TrackingEvent.AGENTINFO, event.mail_item, "AGENT", custom_data=f"{event.decided_by}: deleted")
            await self.store.route(event.mail_item, {})
            return True
        if event.action is Action.DEFER:
            item = event.mail_item
            self.tracking.log(TrackingEvent.DEFER, item, "AGENT", recipient_status=str(event.response or ""),
                              custom_data=f"{event.decided_by}: deferred {event.defer_seconds:g}s")
            await self.store.defer_submission(item.internal_id, event.defer_seconds,
                                              str(event.response or "deferred by agent"))
            return True
        return False

    async def _crashed(self, item: MailItem, why: str) -> None:
        log.error("message %s crashed the categorizer: %s", item.internal_id, why)
        poisoned = await self.store.crash(item.internal_id, self.config.queue.poison_threshold)
        if poisoned:
            self.tracking.log(TrackingEvent.POISONMESSAGE, item, "POISONMESSAGE", custom_data=why, source_context=POISON)


def _deliveries(item: MailItem) -> dict[str, list[str]]:
    """Next hop → the addresses of the recipients ready to go there."""
    deliveries: dict[str, list[str]] = {}
    for r in item.recipients:
        if r.status is RecipientStatus.READY:
            deliveries.setdefault(r.next_hop, []).append(r.address)
    return deliveries


def resolve(item: MailItem, routes: RoutingTable) -> list[Recipient]:
    """Recipients in an authoritative domain must be mailboxes; the others are routed on. Returns the recipients
    failed here (RESOLVER.ADR.ExRecipNotFound)."""
    unknown = [r for r in item.pending() if routes.is_unknown(r)]
    for r in unknown:
        r.status = RecipientStatus.FAILED
        r.response = str(Replies.RECIPIENT_NOT_FOUND)
    return unknown


def route(item: MailItem, routes: RoutingTable, served: Container[str] | None = None) -> None:
    """Each recipient's next hop from the routing table (unless an agent overrode it); a next hop no delivery
    queue serves (not in `served`; None: every next hop the table gives is served) waits in Unreachable."""
    for r in item.pending():
        hop = r.next_hop or routes.next_hop(r)
        r.next_hop = hop if served is None or hop in served else UNREACHABLE

