"""The hub: wires configuration, DNS, agents, queues, categorizer, delivery and the SMTP listeners together.

Data flows one way: sources (SMTP receive, the Pickup and Replay directories; store driver and agents later)
hand mail items to `submit`, which commits them to the Submission queue and feeds the categorizer; the
categorizer routes them into delivery queues; delivery completes them. On start, whatever the store holds is fed back in, so a message
acknowledged before a crash or a restart is delivered after it.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
import subprocess
import ssl
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from pickup.watcher import DirectoryWatcher, start_directory_watchers
from queues.scheduler import QueueScheduler
from queues.store import SUBMISSION, UNREACHABLE, QueueStore

from .agent import AgentContext
from .categorizer import MAILBOX_QUEUE, Categorizer
from .config import TransportConfig, parse_binding
from .counters import Counters
from .delivery.mailbox import MailboxQueue, MailboxStore
from .dns import DnsResolver
from .mailitem import MailItem, new_message_id
from .pipeline import load_pipeline
from .internal_servers import is_internal, parse_internal_servers
from .receive import ORGANIZATION_HEADER_PREFIX, ReceiveProtocol, received_header
from .tracking import TrackingLog

__all__ = ["Hub"]

log = logging.getLogger("transport.hub")


class Hub:
    """One transport server. `await start()`, then `await stop()` (or `serve()` until a signal)."""

    def __init__(self, config: TransportConfig, dns: DnsResolver | None = None) -> None:
        self.config = config
        root = config.data_root
        self.counters = Counters()
        self.dns = dns or DnsResolver(config.dns)
        self.tracking = TrackingLog(root / "logs" / "MessageTracking", config.receive.fqdn,
                                    config.tracking.enabled, config.tracking.max_age_days)
        self.store = QueueStore(root / "queue" / "mail.que", config.queue.durable, config.queue.batch_size)
        self.mailboxes = MailboxStore(root / "mailboxes", config)
        context = AgentContext(config, self.dns, self.counters, logging.getLogger("transport.agents"),
                               submit=self.submit)
        self.pipeline = load_pipeline(config.agents, context)
        self.categorizer = Categorizer(config, self.pipeline, self.store, self.tracking, self._dispatch)
        self.scheduler = QueueScheduler(self.store, config.queue, self.tracking, self._dispatch,
                                        self.categorizer.push, self._drain, self._room)
        self.mailbox_queue = MailboxQueue(self.mailboxes, self.store, self.tracking, self.scheduler,
                                          config.receive.fqdn)
        self.sessions: set[ReceiveProtocol] = set()
        self.servers: list[asyncio.AbstractServer] = []
        self.draining = False
        self._internal = parse_internal_servers(config.internal_smtp_servers)
        self._tasks: list[asyncio.Task] = []
        self.watchers: list[DirectoryWatcher] = []
        self._pressure = False
        self._disk_low = False
        self.started = time.time()

    # -- facts used by receive ----------------------------------------------------------------------
    def is_internal(self, ip: str) -> bool:
        return is_internal(ip, self._internal)

    def back_pressure(self) -> bool:
        """Whether sources should hold off (SMTP answers 452 4.3.1 at MAIL FROM, pickup pauses).

        On when the Submission queue passes max_submission_queue_length or free disk under the data root is
        below min_free_disk_space; off again once the queue is back under 80 % of the limit and disk is free.
        """
        limit = self.config.queue.max_submission_queue_length
        backlog = self.categorizer.backlog
        if not self._pressure and (backlog > limit or self._disk_low):
            self._pressure = True
            log.warning("back pressure on: Submission queue %d (limit %d), disk low: %s", backlog, limit, self._disk_low)
        elif self._pressure and backlog <= limit * 0.8 and not self._disk_low:
            self._pressure = False
            log.info("back pressure off")
        return self._pressure

    def _check_disk(self) -> None:
        try:
            free = shutil.disk_usage(self.config.data_root).free
        except OSError:
            return
        self._disk_low = free < self.config.queue.min_free_disk_space

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where the listeners actually are (ports resolved when the configuration said 0)."""
        return [s.sockets[0].getsockname()[:2] for s in self.servers for _ in s.sockets[:1]]

    # -- submission path ----------------------------------------------------------------------------
    def stamp_received(self, item: MailItem, received: str | None = None) -> None:
        """Trace and organisation headers every received message gets, and the header firewall.

        Anonymous senders may not bring X-MS-Exchange-Organization-* headers (they would set their own SCL);
        authenticated sessions and internal servers may. `received` replaces the SMTP Received line (the
        Pickup and Replay directories write their own).
        """
        s = item.session
        if not (s.authenticated or s.internal):
            item.remove_headers([ORGANIZATION_HEADER_PREFIX], prefix=True)
        top = [("Received", received or received_header(s, self.config.receive.fqdn))]
        item.prepend_headers(top)
        stamps = [
            (ORGANIZATION_HEADER_PREFIX + "AuthAs", s.auth_as.value),
            (ORGANIZATION_HEADER_PREFIX + "AuthSource", self.config.receive.fqdn),
            (ORGANIZATION_HEADER_PREFIX + "OriginalArrivalTime",
             datetime.now(timezone.utc).strftime("%d %b %Y %H:%M:%S.%f")[:-2] + " (UTC)"),
        ]
        if s.authenticated:
            stamps.append(("X-Originating-IP", f"[{s.client_ip}]"))
        if not item.message_id:
            stamps.append(("Message-ID", new_message_id(self.config.receive.fqdn)))
        item.append_headers(stamps)

    async def submit(self, item: MailItem, also: Callable[[sqlite3.Connection, int], Any] | None = None) -> int:
        """Durably queue a message in the Submission queue; returns its internal id once committed.

        `also(conn, internal_id)` is written in the same commit (see QueueStore.enqueue)."""
        internal_id = await self.store.enqueue(item, also=also)
        self.tracking.log("RECEIVE", item, item.source.value, connector_id=self.config.receive.name,
                          source_context=item.session.session_id)
        if item.verdicts:  # what the receive agents did that let the message go on (stamps, errors)
            self.tracking.log("AGENTINFO", item, "AGENT", source_context=item.session.session_id, custom_data="; ".join(
                f"{v.agent}: {v.action} at {v.event}" + (f" ({v.reason})" if v.reason else "") for v in item.verdicts))
        self.categorizer.push(item)
        return internal_id

    def quarantine(self, item: MailItem, reason: str) -> None:
        """Quarantine: deliver to the recipients' Junk folders with the reason stamped (SCL 9)."""
        item.stamps["SCL"] = 9
        item.stamps["Quarantine"] = reason
        item.set_header(ORGANIZATION_HEADER_PREFIX + "SCL", "9")

    def _dispatch(self, queue: str, item_id: int, item: MailItem, recipients: list[str]) -> bool:
        """Hand a queue item to its delivery queue in memory; False leaves it Ready in the store for later."""
        scheduler = self.scheduler
        if item_id in scheduler.inflight:
            return True  # already there (the categorizer and a scheduler refill can both reach it)
        if queue in scheduler.suspended:
            return False  # dispatched when the queue is resumed
        if queue != MAILBOX_QUEUE:
            return False  # Unreachable: waits for a resubmission
        if self.mailbox_queue.room <= 0:
            scheduler.overflow.add(queue)
            return False
        scheduler.inflight.add(item_id)
        self.mailbox_queue.push(item_id, item, recipients)
        return True

    def _room(self, queue: str) -> int:
        return self.mailbox_queue.room if queue == MAILBOX_QUEUE else 0

    def _drain(self) -> list[int]:
        self.categorizer.drain()
        return self.mailbox_queue.drain()

    # -- life cycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        root = self.config.data_root
        for sub in ("queue", "mailboxes", "logs/MessageTracking"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for mb in self.config.mailboxes:
            self.mailboxes.create(mb.address)
        self.started = time.time()
        self.store.open()
        await self._recover()
        await self.pipeline.start()
        self._check_disk()
        self._tasks = [asyncio.create_task(t, name=n) for n, t in (
            ("categorizer", self.categorizer.run()), ("mailbox-delivery", self.mailbox_queue.run()),
            ("queue-scheduler", self.scheduler.run()), ("housekeeping", self._housekeeping()))]
        self.watchers = start_directory_watchers(self)
        tls = self._tls_context()
        loop = asyncio.get_running_loop()
        template = ReceiveProtocol.template(self, tls)
        for binding in self.config.receive.bindings:
            host, port = parse_binding(binding)
            server = await loop.create_server(lambda: ReceiveProtocol(self, tls, template), host, port,
                                              reuse_address=True)
            self.servers.append(server)
        log.info("listening on %s", ", ".join(f"{h}:{p}" for h, p in self.addresses))

    async def _recover(self) -> None:
        """Feed back what the store holds.

        Submission items left in process count a crash (Poison guard); Unreachable is resubmitted, since the
        configuration may have changed since the last run; Retry items wait for the scheduler.
        """
        for message_id in await self.store.recover(self.config.queue.poison_threshold):
            item = self.store.load_message(message_id)
            if item is not None:
                self.tracking.log("POISONMESSAGE", item, "POISONMESSAGE", source_context="Poison")
        await self.store.run(lambda c: c.execute(
            "UPDATE queue_items SET queue=?, status='Ready' WHERE queue=? AND status != 'Suspended'",
            (SUBMISSION, UNREACHABLE)))
        submission = self.store.items("status='Ready' AND queue=?", (SUBMISSION,))
        for stored in submission:
            item = self.scheduler.for_categorizer(stored)
            if item is not None:
                self.categorizer.push(item)
        self.scheduler.overflow.add(MAILBOX_QUEUE)
        self.scheduler.refill(MAILBOX_QUEUE, self.mailbox_queue.room)
        waiting = self.store.read("SELECT COUNT(*) FROM queue_items WHERE queue=? AND status='Ready'", (MAILBOX_QUEUE,))
        if submission or waiting[0][0]:
            log.info("recovered %d message(s) to categorize and %d to deliver from %s", len(submission),
                     waiting[0][0], self.store.path)

    @property
    def counters_path(self) -> Path:
        return self.config.data_root / "logs" / "counters.json"

    async def _housekeeping(self) -> None:
        """Flush the tracking log and check free disk twice a second; save the counters every 2 s."""
        tick = 0
        while True:
            await asyncio.sleep(0.5)
            tick += 1
            self.tracking.flush()
            self._check_disk()
            if tick % 4 == 0:
                self.counters.save(self.counters_path, self.started)

    def _tls_context(self) -> ssl.SSLContext | None:
        tls = self.config.receive.tls
        if not tls.enabled:
            return None
        cert, key = tls.certificate, tls.key
        if cert is None:
            cert, key = self.config.data_root / "tls" / "cert.pem", self.config.data_root / "tls" / "key.pem"
            if not cert.exists() and not _make_self_signed(cert, key, self.config.receive.fqdn):
                log.warning("STARTTLS is off: no certificate configured and openssl could not make one")
                return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key) if key else None)
        return ctx

    async def idle(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is left to categorize or deliver in memory (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.categorizer.idle and self.mailbox_queue.idle and not self.store.pending_writes:
                return True
            await asyncio.sleep(0.01)
        return False

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let sessions and in-flight work finish (up to `grace` seconds), close the store."""
        self.draining = True
        await asyncio.gather(*(w.close() for w in self.watchers))
        for server in self.servers:
            server.close()
        deadline = time.monotonic() + grace
        while self.sessions and time.monotonic() < deadline:
            for session in [s for s in self.sessions if not s.busy]:
                session.shut_down()  # idle sessions go now; a message being received may finish
            await asyncio.sleep(0.05)
        for session in list(self.sessions):
            session.shut_down()
        await self.idle(max(0.0, deadline - time.monotonic()))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pipeline.stop()
        await self.store.close()
        self.tracking.close()
        self.counters.save(self.counters_path, self.started)
        log.info("stopped")


def _make_self_signed(cert: Path, key: Path, fqdn: str) -> bool:
    """A self-signed certificate for STARTTLS, made once with the system's openssl."""
    if shutil.which("openssl") is None:
        return False
    cert.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", f"/CN={fqdn}",
         "-keyout", str(key), "-out", str(cert)], capture_output=True)
    return result.returncode == 0
