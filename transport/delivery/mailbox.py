"""Mailbox delivery: Maildir folders under `<data root>/mailboxes/<address>/`, Inbox or Junk by SCL, or the
quarantine mailbox.

`MailboxStore.folder_for` is the one place that says where a recipient's copy goes: the quarantine mailbox
when an agent quarantined that recipient (the copy then names the original sender and recipient in its own
headers), else the Maildir++ folder `.Junk` when the SCL is above the mailbox's SCLJunkThreshold (the
organisation's unless the mailbox overrides it; `transport.core.scl` decides), else the Inbox.

A batch is planned here (`MailboxStore.plan`: folders, names, trace lines, the look-up below) and its files are
written by `transport.delivery.maildir`: to `tmp/`, made durable, renamed into `new/`, and the renames made
durable (two syncfs for the batch, or fsyncs), so a delivery is on disk before its queue item is completed.
Threads of this process write them, or, when the hub runs receive workers, the mailbox delivery process
(`transport.delivery.mailbox_process`).

Exactly once: a copy's file name is made from the message (its arrival time and internal id), so the same
message in the same mailbox always has the same name. A queue item read back from the store (after a crash,
a retry, an administrator's change) may have been delivered already: before writing it, the mailbox's `new/`
and `cur/` folders (Inbox and Junk; `cur/` names carry `:2,flags` once a client has read them) are looked up
for that name, and a copy that is there is counted as delivered, not written again. Fresh items from the
categorizer skip the look-up, so the hot path pays nothing for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
from dataclasses import dataclass

from pathlib import Path

from typing import TYPE_CHECKING, Protocol

from ..core.config import TransportConfig
from ..core.headers import ORGANIZATION_HEADER_PREFIX, date_now
from ..core.mailitem import MailItem
from ..core.tracking import TrackingEvent
from ..core.scl import SclThresholds
from ..spool import give_back_memory
from .feed import Entry, QueueFeed
from .maildir import Copy, write_side_by_side
from .mailbox_process import DeliveryProcessLost

if TYPE_CHECKING:
    from queues.scheduler import QueueScheduler

    from ..core.dsn_params import Notifier
    from ..core.tracking import TrackingLog

__all__ = ["MailboxStore", "MailboxQueue", "Delivery", "Placement", "CopyWriter", "JUNK_FOLDER", "SENT_ITEMS_FOLDER", "OUTBOX_FOLDER",
           "QUARANTINE", "MAILBOX_QUEUE"]

log = logging.getLogger("transport.delivery.mailbox")

JUNK_FOLDER = ".Junk"
SENT_ITEMS_FOLDER = ".Sent Items"
"""Where the store driver keeps the copy of what a user sent (Maildir++ folder)."""
OUTBOX_FOLDER = ".Outbox"
"""What a user puts here is submitted by the store driver (see `transport.store_driver`)."""
MAILBOX_QUEUE = "mailbox"
"""The next hop of every recipient with a mailbox here (Exchange's "Mailbox Database" delivery queue)."""
QUARANTINE = "Quarantine"
"""The tracking log's source-context of a copy written to the quarantine mailbox."""
ORIGINAL_SENDER_HEADER = ORGANIZATION_HEADER_PREFIX + "Original-Sender"
ORIGINAL_RECIPIENTS_HEADER = ORGANIZATION_HEADER_PREFIX + "OriginalEnvelopeRecipients"
QUARANTINE_REASON_HEADER = "X-Transport-Quarantine-Reason"


class CopyWriter(Protocol):
    """Who writes planned copies besides this process's threads: the mailbox delivery process
    (`transport.delivery.mailbox_process`)."""

    async def write(self, copies: list["Copy"]) -> list[str]:
        """Per copy "" or why it could not be written; DeliveryProcessLost when the writer died meanwhile."""


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one recipient's copy goes: whose Maildir, which folder ("" is the Inbox), and whether it is the
    quarantine mailbox's copy of mail for that recipient (then `reason` says why)."""

    mailbox: str
    folder: str = ""
    quarantined: bool = False
    reason: str = ""

    @property
    def label(self) -> str:
        """Inbox, .Junk or Quarantine: the tracking log's source-context."""
        return QUARANTINE if self.quarantined else self.folder or "Inbox"


@dataclass(slots=True)
class Delivery:
    """One recipient's copy: where it went (folder and file) or why it could not be written."""

    recipient: str
    folder: str = ""
    mailbox: str = ""  # whose Maildir holds it (the quarantine mailbox's, for a quarantined recipient)
    path: str = ""
    error: str = ""
    earlier: bool = False  # the copy was already there (written before a crash); nothing was written now


class MailboxStore:
    """The Maildir tree of every mailbox in the directory."""

    def __init__(self, root: Path, config: TransportConfig) -> None:
        self.root = root
        self.config = config
        self._host = socket.gethostname().replace("/", "_").replace(":", "_")
        self._created: set[str] = set()
        self._folders: dict[tuple[str, str], tuple[str, str]] = {}  # (mailbox, folder) → its tmp/ and new/
        self.thresholds: SclThresholds = config.scl_thresholds()  # the organisation's: junk, quarantine mailbox

    def maildir(self, address: str) -> Path:
        return self.root / address.lower()

    def create(self, address: str) -> Path:
        """Make the mailbox's Maildir (Inbox) and its Junk, Sent Items and Outbox folders if missing (checked
        once per process)."""
        base = self.maildir(address)
        if address in self._created:
            return base
        for folder in (base, base / JUNK_FOLDER, base / SENT_ITEMS_FOLDER, base / OUTBOX_FOLDER):
            for sub in ("cur", "new", "tmp"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            if folder != base:
                (folder / "maildirfolder").touch(exist_ok=True)
        self._created.add(address)
        return base

    def _tmp_and_new(self, mailbox: str, folder: str) -> tuple[str, str]:
        """The `tmp/` and `new/` paths of a mailbox's folder, made once (the folders too, if missing)."""
        known = self._folders.get((mailbox, folder))
        if known is None or mailbox not in self._created:
            base = self.create(mailbox)
            base = base / folder if folder else base
            known = self._folders[(mailbox, folder)] = (str(base / "tmp"), str(base / "new"))
        return known

    def folder_for(self, item: MailItem, address: str) -> Placement:
        """Where the copy for `address` goes: the quarantine mailbox, its Junk folder or its Inbox."""
        reason = item.quarantine_reason(address)
        if reason is not None and self.thresholds.quarantine_mailbox:
            return Placement(self.thresholds.quarantine_mailbox, "", True, reason)
        thresholds = self.thresholds.for_mailbox(self.config.mailbox(address))
        return Placement(address, JUNK_FOLDER if thresholds.moves_to_junk(item.scl) else "")

    def name(self, item: MailItem, quarantined_for: str = "") -> str:
        """The file name of the message's copy in a mailbox (Maildir's time.MusecP… shape, unique per message;
        a quarantine copy also carries a digest of the recipient it was for, so each has its own)."""
        at = item.received_at
        extra = "Q" + hashlib.sha1(quarantined_for.encode()).hexdigest()[:10] if quarantined_for else ""
        return f"{int(at)}.M{int(at * 1e6) % 1000000}I{item.internal_id}{extra}.{self._host}"

    @staticmethod
    def _trace(item: MailItem, address: str, placement: Placement, fqdn: str, date: str) -> bytes:
        """The lines a copy gets on top: Return-Path and our Received line, and for a quarantine copy the
        original envelope (sender and recipient) and the reason."""
        lines = [f"Return-Path: <{item.sender}>",
                 f"Received: from {fqdn} by {fqdn} with mailbox delivery id {item.internal_id}"
                 f" for <{placement.mailbox}>; {date}"]
        if placement.quarantined:
            lines += [f"{ORIGINAL_SENDER_HEADER}: <{item.sender}>", f"{ORIGINAL_RECIPIENTS_HEADER}: <{address}>",
                      f"{QUARANTINE_REASON_HEADER}: {' '.join(placement.reason.split())}"]
        return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")

    def _earlier(self, address: str, name: str, listings: dict[Path, set[str]]) -> tuple[str, Path] | None:
        """Where a copy of that name already is in the mailbox (folder, path), if anywhere."""
        base = self.maildir(address)
        for folder, path in (("Inbox", base), (JUNK_FOLDER, base / JUNK_FOLDER)):
            if (path / "new" / name).exists():
                return folder, path / "new" / name
            cur = path / "cur"
            if cur not in listings:
                try:
                    listings[cur] = {n.partition(":")[0] for n in os.listdir(cur)}
                except OSError:
                    listings[cur] = set()
            if name in listings[cur]:
                return folder, cur / name
        return None

    def plan(self, batch: list[tuple[MailItem, list[str], bool]], fqdn: str) -> tuple[list[list[Delivery]], list[Pending]]:
        """Where one copy per recipient of each message goes, and the copies still to write (`maildir.Copy`).

        Each entry is (message, recipients, recovered); a recovered entry's copies are looked for first (see the
        module docstring), and one found is counted as delivered, not written again.
        """
        listings: dict[Path, set[str]] = {}
        date = date_now()
        out, todo = [], []
        for item, recipients, recovered in batch:
            results = []
            for address in recipients:
                placement = self.folder_for(item, address)
                name = self.name(item, address if placement.quarantined else "")
                d = Delivery(address, mailbox=placement.mailbox)
                results.append(d)
                earlier = self._earlier(placement.mailbox, name, listings) if recovered else None
                if earlier is not None:
                    d.folder, d.path, d.earlier = QUARANTINE if placement.quarantined else earlier[0], str(earlier[1]), True
                    continue
                try:
                    tmp_dir, new_dir = self._tmp_and_new(placement.mailbox, placement.folder)
                except OSError as e:
                    d.error = f"{e.strerror or e}"
                    continue
                parts = [self._trace(item, address, placement, fqdn, date), item.raw]
                todo.append(Pending(d, placement.label, Copy(os.path.join(tmp_dir, name), os.path.join(new_dir, name),
                                                             parts, item.spool)))
            out.append(results)
        return out, todo

    def settle(self, todo: list[Pending], errors: list[str]) -> None:
        """What writing the planned copies gave (an error text per copy, "" when written)."""
        for pending, error in zip(todo, errors):
            d = pending.delivery
            if error:
                d.error = error
                self._created.discard(d.mailbox)  # make the folders again on the next attempt
            else:
                d.folder, d.path = pending.label, pending.copy.final


@dataclass(slots=True)
class Pending:
    """A planned copy and the recipient's delivery it completes (in that folder: Inbox, .Junk or Quarantine)."""

    delivery: Delivery
    label: str
    copy: Copy


class MailboxQueue(QueueFeed):
    """The delivery queue for local mailboxes: batches of copies planned here, written off the loop (by the
    mailbox delivery process when the hub has one, else by threads of this process), then completed."""

    next_hop = MAILBOX_QUEUE
    delivery_type = "SmtpDeliveryToMailbox"

    def __init__(self, mailboxes: MailboxStore, tracking: "TrackingLog", scheduler: "QueueScheduler", fqdn: str,
                 batch_size: int = 64, notifier: "Notifier | None" = None,
                 writer: CopyWriter | None = None) -> None:
        self.mailboxes = mailboxes
        self.writer = writer  # the mailbox delivery process, or None: this process's threads write
        self.notifier = notifier  # delivered notices for NOTIFY=SUCCESS
        self.tracking = tracking
        self.scheduler = scheduler
        self.fqdn = fqdn
        self.batch_size = batch_size
        super().__init__()
        self.delivered = 0
        self.capacity = 16 * batch_size  # messages held in memory; the rest wait in the store
        self.tracked: set[tuple[int, str]] = set()  # (message, recipient) with a DELIVER row before a restart

    async def _write_batch(self, batch: list[Entry]) -> list[list[Delivery]]:
        entries = [(item, rcpts, recovered) for _, item, rcpts, recovered in batch]
        deliveries, todo = self.mailboxes.plan(entries, self.fqdn)
        if not todo:
            return deliveries
        copies = [p.copy for p in todo]
        if self.writer is None:
            self.mailboxes.settle(todo, await write_side_by_side(copies))
            return deliveries
        try:
            self.mailboxes.settle(todo, await self.writer.write(copies))
        except DeliveryProcessLost as e:
            # Some copies may be in the mailboxes already: planned again as recovered, they are found, not doubled.
            log.warning("%s; writing its batch of %d message(s) here", e, len(batch))
            deliveries, todo = self.mailboxes.plan([(item, rcpts, True) for item, rcpts, _ in entries], self.fqdn)
            self.mailboxes.settle(todo, await write_side_by_side([p.copy for p in todo]))
        return deliveries

    async def run(self) -> None:
        while True:
            batch = [await self.feed.get()]
            while len(batch) < self.batch_size and not self.feed.empty():
                batch.append(self.feed.get_nowait())
            self._busy = len(batch)
            try:
                await self._deliver(batch)
            except Exception:
                log.exception("mailbox delivery batch failed; its messages stay queued for the next start")
            finally:
                self._busy = 0

    async def _deliver(self, batch: list[Entry]) -> None:
        results = await self._write_batch(batch)
        done = []
        for (item_id, item, _, _), deliveries in zip(batch, results):
            failed = [d.recipient for d in deliveries if d.error]
            for d in deliveries:
                if d.error or (d.earlier and (item.internal_id, d.recipient) in self.tracked):
                    continue
                self.tracking.log(TrackingEvent.DELIVER, item, "STOREDRIVER", [d.recipient], "250 2.0.0 Delivered",
                                  source_context=d.folder, related_recipient=d.mailbox if d.mailbox != d.recipient else "",
                                  custom_data="copy already in the mailbox" if d.earlier else "")
            if failed:
                error = "432 4.2.0 STOREDRV.Deliver; mailbox unavailable: " + "; ".join(d.error for d in deliveries if d.error)
                self.tracking.log(TrackingEvent.DEFER, item, "STOREDRIVER", failed, error)
                await self.scheduler.defer(item_id, failed, error)
            else:
                done.append(item_id)
            self.delivered += len(deliveries) - len(failed)
            if self.notifier is not None:
                written = {d.recipient for d in deliveries if not (d.error or d.earlier)}
                await self.notifier.success(item, [r for r in item.recipients if r.address in written])
        if done:
            await self.scheduler.complete(done)
        if any(item.spool is not None for _, item, _, _ in batch):
            await asyncio.to_thread(give_back_memory)
