"""The hub: the composition root that builds every part from the configuration and starts and stops them.

Data flows one way: sources (the receive connector's SMTP sessions, the Pickup and Replay directories, the
store driver's Outboxes, agents) hand mail items to the submission path, which commits them to the Submission queue and
feeds the categorizer; the categorizer asks the routing table for each recipient's next hop and hands the
message to the delivery queue registered for it; delivery completes it. On start, whatever the store holds is
fed back in, so a message acknowledged before a crash or a restart is delivered after it. Reports to senders
(NDRs, delay and success notices) are made by `notifications`, which every part that fails, delays or delivers
a recipient is handed. Nothing but this module (and the command that runs it) knows all the parts, and it hands
each time-driven part (the queue store and scheduler, notifications, the log files, the counters) the one clock
the hub was given (`transport.core.clock`: the real time unless a test brings its own).

SMTP receive runs in the receive worker processes (`transport.workers`, `workers:` in the configuration) and,
unless `hub_receives` is off, in this process too, on the same ports: the workers hand each message to this
process's submission path, which commits it as it would one received here. Everything else, and every file, is
this process's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from typing import Any, Callable

from pickup.rules import DirectoryRules, PickupRules
from pickup.watcher import DirectoryWatcher
from queues.scheduler import QueueScheduler
from queues.store import SUBMISSION, QueueStore
from replay.rules import ReplayRules

from .categorizer import Categorizer
from .connection_limits import raise_open_file_limit
from .core.agent import AgentContext
from .core.agent_log import agent_log
from .core.clock import Clock, real_time
from .core.config import TransportConfig
from .core.counters import Counters
from .core.dns import DnsResolver
from .core.mailitem import MailItem
from .core.pipeline import load_pipeline
from .core.protocol_log import Direction, ProtocolLoggingLevel, protocol_log
from .core.tracking import TrackingEvent, recorded, tracking_log
from .data_root_lock import DataRootLock
from .core.delivery import DeliveryQueue
from .delivery.connectors import SendConnectors
from .delivery.mailbox import MailboxQueue, MailboxStore
from .delivery.mailbox_process import MailboxDeliveryProcess
from .metrics import MetricsEndpoint
from .delivery.smtp import Outbound
from .notifications import Notifications
from .receive_connector import ReceiveConnectors
from .routing import RoutingTable
from .workers import ReceiveWorkers
from .store_driver import OutboxRules, outbox
from .submission import Submission

__all__ = ["Hub"]

log = logging.getLogger("transport.hub")

HOUSEKEEPING_INTERVAL = 0.5
"""Seconds (real) between the housekeeping's rounds: free disk is checked at each."""
COUNTERS_SAVE_INTERVAL = 2.0
"""Seconds on the hub's clock between two saves of the counters' snapshot."""


class Hub:
    """One transport server. `await start()`, then `await stop()`."""

    def __init__(self, config: TransportConfig, dns: DnsResolver | None = None, clock: Clock = real_time) -> None:
        self.config = config
        self.clock = clock
        root = config.data_root
        self.counters = Counters(clock)
        self.dns = dns or DnsResolver(config.dns)
        self.tracking = tracking_log(config, clock)
        self.store = QueueStore(root / "queue" / "mail.que", config.queue.durable, config.queue.batch_size, clock)
        context = AgentContext(config, self.dns, self.counters, logging.getLogger("transport.agents"))
        self.pipeline = load_pipeline(config.agents, context, self.tracking, agent_log(config, clock))
        self.notifications = Notifications(config, lambda item, source: self.submission.submit_generated(item, source),
                                           self.tracking, clock)
        self.scheduler = QueueScheduler(self.store, config.queue, self.tracking,
                                        resubmit=lambda item: self.categorizer.push(item),
                                        forget_submissions=lambda: self.categorizer.drain(),
                                        notifier=self.notifications)
        send_log = any(c.protocol_logging_level is ProtocolLoggingLevel.VERBOSE for c in config.send_connectors)
        self.outbound = Outbound(config.receive.fqdn, self.dns, self.tracking, self.scheduler, self.notifications,
                                 protocol_log(config, Direction.SEND, clock) if send_log else None)
        self.send_connectors = SendConnectors(config, self.outbound, self._start_queue)
        self.categorizer = Categorizer(config, self.pipeline, self.store, self.tracking,
                                       RoutingTable(config, self.send_connectors), self.scheduler, self.notifications)
        self.submission = Submission(config, self.pipeline, self.store, self.tracking, self.categorizer, clock)
        context.submit = self.submission.submit_from_agent
        self.mailboxes = MailboxStore(root / "mailboxes", config)
        # with receive worker processes, the Maildir files are written by a process of their own too
        self.mailbox_delivery = MailboxDeliveryProcess() if config.receive_workers else None
        self.mailbox_queue = MailboxQueue(self.mailboxes, self.tracking, self.scheduler, config.receive.fqdn,
                                          notifier=self.notifications, writer=self.mailbox_delivery)
        self.scheduler.register(self.mailbox_queue)
        self.connectors = ReceiveConnectors(config, self.submission, clock)
        self.receive = self.connectors.connectors[0]  # the first connector (Default Frontend in the demo)
        self.workers = ReceiveWorkers(config.receive_workers, config, self.submission, self.pipeline, self.counters,
                                      self._row_writers()) if config.receive_workers else None
        self.watchers: list[DirectoryWatcher] = []
        self.outboxes: list[DirectoryWatcher] = []  # the store driver: one watcher per mailbox's Outbox
        self.lock = DataRootLock(root)
        self.metrics = MetricsEndpoint(config.metrics, self.counters, self.pipeline, root / "queue" / "mail.que",
                                       clock) if config.metrics.enabled else None
        if self.metrics is not None:
            self.tracking.listeners.append(self.metrics.record)
        self.metrics_address: tuple[str, int] | None = None
        self._tasks: list[asyncio.Task] = []
        self._running = False
        self.housekeeping_rounds = 0  # rounds completed (tests wait on it, as on the scheduler's ticks)
        self.started = clock()

    def _row_writers(self) -> dict[str, Callable[[Any], None]]:
        """Where the rows of receive worker processes are appended, by their log's prefix."""
        writers: dict[str, Callable[[Any], None]] = {self.tracking.file.prefix: self.tracking.append}
        for log_ in (self.pipeline.agent_log, self.connectors.protocol_log):
            if log_ is not None:
                writers[log_.file.prefix] = log_.file.write
        return writers

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where the receive connectors listen, the first connector's first (ports resolved when the configuration
        said 0)."""
        return self.connectors.addresses

    # -- life cycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        root = self.config.data_root
        for sub in ("queue", "mailboxes", "logs/MessageTracking"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for mb in self.config.mailboxes:
            self.mailboxes.create(mb.address)
        self.started = self.clock()
        self.lock.acquire()
        if self.metrics is not None:
            self.metrics_address = self.metrics.listen()
            log.info("metrics on http://%s:%d/metrics", *self.metrics_address)
        raise_open_file_limit()  # before the receive connectors count their descriptor budget
        self.store.open()
        await self._recover()
        await self.pipeline.start()
        self.submission.check_disk()
        tasks = [("categorizer", self.categorizer.run()), ("queue-scheduler", self.scheduler.run()),
                 ("housekeeping", self._housekeeping())]
        tasks += [(f"{hop}-delivery", queue.run()) for hop, queue in self.scheduler.queues.items()]
        self._tasks = [asyncio.create_task(t, name=n) for n, t in tasks]
        self._running = True
        self._start_directories()
        if self.workers is None:
            await self.connectors.start()
        else:
            sockets = self._bind()
            await self.workers.start(sockets[:self.workers.count])
            if self.config.hub_serves_sessions:
                await self.connectors.start(sockets[-1])
        log.info("listening on %s%s", ", ".join(f"{h}:{p}" for h, p in self.addresses), self._receivers())

    def _bind(self) -> list[list[socket.socket]]:
        """Each receive process's listening sockets, bound; the hub's own (last) served here when it receives.

        This process runs the queue for every message, so it takes half a worker's share of new connections:
        one socket per address against two for each worker. On two cores, measured by hand (`smtp-source -s 10
        -l 4096`, (c)'s configuration, alternating): a third of the connections here against a half, 1,004–1,023
        against 960–977 msg/s with a new connection per message, 1,432–1,550 against 1,387–1,518 with kept
        connections; a quarter here was slower than a third (960 and 1,417)."""
        assert self.workers is not None
        here = self.config.hub_serves_sessions
        return self.connectors.bind([2 if here else 1] * self.workers.count + ([1] if here else []))

    def _receivers(self) -> str:
        if self.workers is None:
            return ""
        return f" ({self.workers.count} receive worker process{'es' if self.workers.count > 1 else ''}" + (
            " and this one)" if self.config.hub_serves_sessions else ")")

    def _start_directories(self) -> None:
        """A watcher for the Pickup and the Replay directory, each unless its path is empty, and one for each
        mailbox's Outbox unless store-driver submission is off."""
        for settings, rules_cls in ((self.config.pickup, PickupRules), (self.config.replay, ReplayRules)):
            directory = settings.directory(self.config.data_root)
            if directory is not None:
                self.watchers.append(self._watch(directory, rules_cls(settings, self.config, self.submission.is_internal)))
        for mb in self.config.mailboxes:  # the store driver: each mailbox's Outbox
            maildir = self.mailboxes.maildir(mb.address)
            directory = outbox(maildir, self.config.store_driver)
            if directory is not None:
                self.outboxes.append(self._watch(directory, OutboxRules(
                    self.config.store_driver, self.config, self.submission.is_internal, mb.address, maildir)))

    def _watch(self, directory: Path, rules: DirectoryRules) -> DirectoryWatcher:
        watcher = DirectoryWatcher(self.submission, self.config, directory, rules, self.notifications)
        watcher.start()
        return watcher

    def _start_queue(self, queue: DeliveryQueue) -> None:
        """Register a delivery queue opened after construction (a send connector's) and run it once the hub runs."""
        self.scheduler.register(queue)
        if self._running:
            self._tasks.append(asyncio.create_task(queue.run(), name=f"{queue.next_hop}-delivery"))

    def _received_at_start_up(self, item: MailItem) -> None:
        self.tracking.log(TrackingEvent.RECEIVE, item, item.source.value,
                          connector_id=item.session.connector or self.config.receive.name,
                          source_context=item.session.session_id, custom_data="written at start-up")

    async def _recover(self) -> None:
        """Feed back what the store holds.

        Submission items left in process count a crash (Poison guard); Unreachable is resubmitted, since the
        configuration may have changed since the last run; Retry items wait for the scheduler.
        """
        self.scheduler.suspended = self.store.suspended_queues()  # before anything is dispatched
        for message_id in await self.store.recover(self.config.queue.poison_threshold):
            item = self.store.load_message(message_id)
            if item is not None:
                self.tracking.log(TrackingEvent.POISONMESSAGE, item, "POISONMESSAGE", source_context="Poison")
        await self.store.resubmit_unreachable()
        submission = self.store.ready(SUBMISSION)
        oldest = self.store.oldest_arrival()
        rows = await asyncio.to_thread(recorded, self.tracking.folder, {"RECEIVE", "DELIVER"}, oldest) if oldest else set()
        self.mailbox_queue.tracked = {(m, r) for event, m, r in rows if event == "DELIVER"}
        received = {m for event, m, _ in rows if event == "RECEIVE"}
        for stored in submission:
            item = self.scheduler.for_categorizer(stored)
            if item is None:
                continue
            if item.internal_id not in received:  # committed, then the process died before its row was written
                self._received_at_start_up(item)
            self.categorizer.push(item)
        if self.tracking.enabled:  # committed straight into a delivery queue (routed ahead), then the process died
            for message_id in sorted(self.store.message_ids() - received - {s.message for s in submission}):
                item = self.store.load_message(message_id)
                if item is not None:
                    self._received_at_start_up(item)
                    self.tracking.log(TrackingEvent.SUBMIT, item, "QUEUE", source_context="Submission")
        waiting = 0
        self.send_connectors.restore(self.store.delivery_queues())
        for next_hop in self.scheduler.queues:
            waiting += self.store.count_ready(next_hop)
            self.scheduler.overflow.add(next_hop)
            self.scheduler.refill(next_hop)
        if submission or waiting:
            log.info("recovered %d message(s) to categorize and %d to deliver from %s", len(submission),
                     waiting, self.store.path)

    @property
    def counters_path(self) -> Path:
        return self.config.data_root / "logs" / "counters.json"

    async def _housekeeping(self) -> None:
        """Check free disk every round; save the counters once COUNTERS_SAVE_INTERVAL has passed on the clock."""
        saved = self.clock()
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            self.submission.check_disk()
            if self.workers is not None:
                self.workers.check_pressure()
            now = self.clock()
            if now - saved >= COUNTERS_SAVE_INTERVAL:
                self.counters.save(self.counters_path, self.started, self.pipeline.counts())
                saved = now
            self.housekeeping_rounds += 1

    async def idle(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is left to categorize or deliver in memory (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.categorizer.idle and self.scheduler.idle and not self.store.pending_writes:
                return True
            await asyncio.sleep(0.01)
        return False

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let sessions and in-flight work finish (up to `grace` seconds), close the store."""
        deadline = time.monotonic() + grace
        self._running = False
        await asyncio.gather(*(w.close() for w in self.watchers + self.outboxes))
        await asyncio.gather(self.connectors.close(grace), *([self.workers.stop(grace)] if self.workers else []))
        await self.idle(max(0.0, deadline - time.monotonic()))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pipeline.stop()
        self.pipeline.close()
        if self.mailbox_delivery is not None:
            await self.mailbox_delivery.stop()
        await self.store.close()
        self.tracking.close()
        if self.outbound.protocol_log is not None:
            self.outbound.protocol_log.close()
        self.counters.save(self.counters_path, self.started, self.pipeline.counts())
        if self.metrics is not None:
            self.metrics.close()
        self.lock.release()
        log.info("stopped")
