"""Watching the Pickup and Replay directories (and each mailbox's Outbox, for the store driver): claim each
file, convert it, play it to the agents, queue it. What differs between them is the rules object's.

Finding files: a scan every `poll_interval` seconds (0.25 s by default; Exchange polls every 5 s) lists the
names the rules take (`*.eml` for Pickup and Replay, any name in an Outbox) with one os.scandir, off the event loop. A file is taken once its ctime is QUIET seconds old,
so a copy still being written (`cp` into the folder) is left alone; the worst-case latency is therefore
poll_interval + QUIET. No inotify: a scan of an idle folder costs microseconds, and one scan feeds batches of
up to `queue.batch_size` files, so 10,000 files dropped at once cost a handful of scans, not one per file.

A batch is claimed (each `x.eml` renamed `x.tmp`, Exchange's claim) and read in one thread hop, converted by
the directory's rules, played to the receive agents, and submitted concurrently, so one group commit of the
queue store takes the whole batch. PickupDirectoryMaxMessagesPerMinute, when not 0, caps the claims.

Crash safety: a file is deleted (by the rules' `file_queued`: an Outbox's goes to Sent Items) only after its
message is durably queued. The name and SHA-256 of each claimed file are committed with its message (a
`FileClaim` handed to the submission path), and the record is removed once the file is gone. At start-up a
leftover `.tmp` with a matching claim was already queued and is disposed of the same way; any other goes back
to `.eml` and is picked up again. So a file is never queued twice, and never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from transport.core.config import TransportConfig
from transport.core.dsn_params import Notifier
from transport.core.errors import BadFileError, StoreError
from transport.core.tracking import TrackingEvent
from transport.core.events import Action
from transport.core.mailitem import MailItem, SessionInfo
from transport.core.sources import FileClaim, SubmissionPath

from .badmail import free_name, move_to_badmail
from .rules import Conversion, DirectoryRules
from .session import SimulatedSession

__all__ = ["DirectoryWatcher", "Fate", "Outcome"]

log = logging.getLogger("transport.pickup")

QUIET = 0.1
"""Seconds a file must have been left alone before it is claimed."""
UNREADABLE_RETRY = 5.0
"""Seconds before a file that could not be claimed or read is tried again (Exchange retries them too)."""

@dataclass(slots=True)
class Claim:
    """A claimed file: the name it was dropped as, where it is now, and its content."""

    name: str
    path: Path
    raw: bytes
    sha256: str


class Fate(enum.Enum):
    """What became of one claimed file."""

    QUEUED = "queued"      # committed to the Submission queue: the file is deleted (an Outbox's: to Sent Items)
    DELETED = "deleted"    # an agent deleted the message: the file goes as a queued one's does, nothing is queued
    BAD = "bad"            # it cannot be submitted: the file goes to badmail with the reason
    RETRY = "retry"        # the queue database refused it: the file goes back to be tried again


@dataclass(slots=True)
class Outcome:
    """What became of one file, and why."""

    status: Fate
    reason: str = ""
    item: MailItem | None = None
    internal_id: int = 0
    kept: bytes | None = None  # the copy the sender keeps (see Conversion.kept)


class RateLimit:
    """PickupDirectoryMaxMessagesPerMinute as a token bucket: a minute's worth at once, then a steady rate."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.tokens = self.capacity
        self._stamp = time.monotonic()

    def available(self) -> int:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        return int(self.tokens)

    def take(self, count: int) -> None:
        self.tokens -= count

    def wait(self) -> float:
        """Seconds until the next file may be claimed."""
        return max(0.0, (1.0 - self.tokens) / self.rate)


class DirectoryWatcher:
    """One watched directory (Pickup, Replay or a mailbox's Outbox) feeding the submission path."""

    def __init__(self, submission: SubmissionPath, config: TransportConfig, directory: Path,
                 rules: DirectoryRules, notifier: Notifier | None = None) -> None:
        self.submission = submission
        self.notifier = notifier  # the NDR for a file moved to badmail, when `badmail_ndr` is on
        self.directory = directory
        self.rules = rules
        self.settings = rules.settings
        self.source = rules.source.value
        self.badmail = config.data_root / "badmail"
        self.batch_size = config.queue.batch_size
        self.durable = config.queue.durable
        per_minute = self.settings.max_messages_per_minute
        self.rate_limit = RateLimit(per_minute) if per_minute else None
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._not_before: dict[str, float] = {}
        self.scans = 0  # scans completed: "the directory has been looked at since" (tests wait on it)

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.rules.received_by.lower()}-directory")

    async def close(self) -> None:
        """Stop claiming; the batch in hand is finished (queued or put back) first."""
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            await self._recover()
        except Exception:
            log.exception("%s directory %s: recovery failed; not watching it", self.rules.received_by, self.directory)
            return
        log.info("watching the %s directory %s", self.rules.received_by, self.directory)
        while not self._stop.is_set():
            try:
                delay = await self._poll()
            except Exception:
                log.exception("%s directory %s: scan failed", self.rules.received_by, self.directory)
                delay = self.settings.poll_interval
            self.scans += 1
            if delay:
                await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    # -- recovery -----------------------------------------------------------------------------------
    async def _recover(self) -> None:
        """Leftover `.tmp` files: those already queued (their claim is recorded) go to the rules' `file_queued`
        (deleted, or to Sent Items from an Outbox); the rest are restored."""
        claims = self.submission.claims
        restored, dropped = await asyncio.to_thread(self._restore, claims.claimed(str(self.directory)))
        await claims.forget_directory(str(self.directory))
        if restored or dropped:
            log.info("%s directory: %d claimed file(s) put back, %d already queued removed",
                     self.rules.received_by, restored, dropped)

    def _restore(self, claimed: dict[str, str]) -> tuple[int, int]:
        self.directory.mkdir(parents=True, exist_ok=True)
        restored = dropped = 0
        with os.scandir(self.directory) as entries:
            leftovers = [Path(e.path) for e in entries if e.name.lower().endswith(".tmp") and e.is_file()]
        for path in leftovers:
            digest = claimed.get(path.name)
            if digest is not None and hashlib.sha256(path.read_bytes()).hexdigest() == digest:
                self.rules.file_queued(path, None)
                dropped += 1
            else:
                os.rename(path, free_name(path.with_suffix(".eml")))
                restored += 1
        self._sync_directory()
        return restored, dropped

    # -- scanning and claiming ----------------------------------------------------------------------
    async def _poll(self) -> float:
        """One scan and the batches it yields; returns the seconds to wait before the next scan.

        The batches overlap: while one is converted and submitted on the event loop, the next is claimed
        and the previous one cleaned up in threads (file system calls release the GIL).
        """
        idle = self.settings.poll_interval
        if self.submission.back_pressure:
            return idle
        names = await asyncio.to_thread(self._scan)
        if not names:
            return idle
        claiming, names = self._claim_next(names)
        cleaning: asyncio.Task | None = None
        queue_ok = True
        try:
            while claiming is not None:
                claims = await claiming
                claiming = None
                if names and queue_ok and not self._stop.is_set() and not self.submission.back_pressure:
                    claiming, names = self._claim_next(names)
                outcomes = await asyncio.gather(*(self._submit(c) for c in claims))
                queue_ok = all(o.status is not Fate.RETRY for o in outcomes)
                if cleaning is not None:
                    await cleaning
                cleaning = asyncio.create_task(self._clean_up(claims, outcomes))
        finally:
            if claiming is not None:  # an error above: put back what was claimed meanwhile
                unused = await claiming
                await self._clean_up(unused, [Outcome(Fate.RETRY) for _ in unused])
            if cleaning is not None:
                await cleaning
        if not queue_ok:
            return idle
        if names and self.rate_limit is not None and not self.rate_limit.available():
            return self.rate_limit.wait()
        return 0.0

    def _claim_next(self, names: list[str]) -> tuple[asyncio.Task | None, list[str]]:
        """Start claiming the next batch in a thread (within the rate limit); returns it and the names left."""
        size = self.batch_size
        if self.rate_limit is not None:
            size = min(size, self.rate_limit.available())
            self.rate_limit.take(min(size, len(names)))
        if not size:
            return None, names
        return asyncio.create_task(asyncio.to_thread(self._claim, names[:size])), names[size:]

    def _scan(self) -> list[str]:
        """Names of the files the rules take (`*.eml` for Pickup and Replay) ready to claim, oldest name first."""
        now, mono = time.time(), time.monotonic()
        self._not_before = {n: t for n, t in self._not_before.items() if t > mono}
        names = []
        try:
            entries = os.scandir(self.directory)
        except FileNotFoundError:
            self.directory.mkdir(parents=True, exist_ok=True)
            return []
        with entries:
            for entry in entries:
                name = entry.name
                if not self.rules.takes(name) or name in self._not_before:
                    continue
                try:
                    st = entry.stat()
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) and now - st.st_ctime >= QUIET:
                    names.append(name)
        names.sort()
        return names

    def _claim(self, names: list[str]) -> list[Claim]:
        """Rename each file to `.tmp` and read it (one thread hop for the batch)."""
        claims = []
        for name in names:
            path = self.directory / name
            tmp = free_name(path.with_suffix(".tmp"))
            try:
                os.rename(path, tmp)
            except FileNotFoundError:
                continue
            except OSError as e:
                log.warning("%s directory: cannot claim %s (tried again later): %s", self.rules.received_by, name, e)
                self._not_before[name] = time.monotonic() + UNREADABLE_RETRY
                continue
            try:
                raw = tmp.read_bytes()
            except OSError as e:
                log.warning("%s directory: cannot read %s (tried again later): %s", self.rules.received_by, name, e)
                with contextlib.suppress(OSError):
                    os.rename(tmp, free_name(path))
                self._not_before[name] = time.monotonic() + UNREADABLE_RETRY
                continue
            claims.append(Claim(name, tmp, raw, hashlib.sha256(raw).hexdigest()))
        if claims:
            self._sync_directory()
        return claims

    def _sync_directory(self) -> None:
        """Make renames and deletions in the folder durable before the queue database relies on them."""
        if not self.durable:
            return
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- one batch ----------------------------------------------------------------------------------
    async def _clean_up(self, claims: list[Claim], outcomes: list[Outcome]) -> None:
        """After a batch: files gone, then their claim records; badmail moves tracked."""
        removed, bad = await asyncio.to_thread(self._settle, claims, outcomes)
        if removed:
            await self.submission.claims.forget_messages(removed)
        for claim, outcome, path in bad:
            log.warning("%s directory: %s moved to %s: %s", self.rules.received_by, claim.name, path, outcome.reason)
            item = outcome.item or MailItem(sender="", recipients=[], raw=claim.raw, source=self.rules.source,
                                            session=SessionInfo(session_id=claim.name))
            self.submission.tracking.log(TrackingEvent.BADMAIL, item, self.source, recipient_status=outcome.reason,
                                  source_context=claim.name, custom_data=str(path))
            if self.settings.badmail_ndr and "@" in item.sender and item.pending():
                await self._badmail_ndr(item, outcome.reason)

    def _settle(self, claims: list[Claim],
                outcomes: list[Outcome]) -> tuple[list[int], list[tuple[Claim, Outcome, Path]]]:
        """Delete what is queued, put back what must be retried, move the rest to badmail."""
        removed, bad = [], []
        for claim, outcome in zip(claims, outcomes):
            try:
                if outcome.status is Fate.RETRY:
                    os.rename(claim.path, free_name(self.directory / claim.name))
                elif outcome.status is Fate.BAD:
                    bad.append((claim, outcome, move_to_badmail(self.badmail, claim.path, claim.name,
                                                                self.directory, outcome.reason)))
                else:
                    self.rules.file_queued(claim.path, outcome.kept)
                    removed.append(outcome.internal_id)
            except OSError as e:  # left as .tmp: the claim record decides at the next start
                log.error("%s directory: cannot clean up %s: %s", self.rules.received_by, claim.path, e)
        self._sync_directory()
        return removed, bad

    async def _badmail_ndr(self, item: MailItem, reason: str) -> None:
        """The NDR for a file moved to badmail: every recipient it names, failed with the reason."""
        if self.notifier is None:
            return
        for r in item.pending():
            r.response = f"554 5.6.0 {reason}"
        await self.notifier.ndr(item, item.pending())

    async def _submit(self, claim: Claim) -> Outcome:
        try:
            conversion = self.rules.convert(claim.raw, claim.name)
        except BadFileError as e:
            return Outcome(Fate.BAD, str(e), e.item)
        except Exception as e:  # a file that trips a bug must not come back forever
            log.exception("%s directory: converting %s failed", self.rules.received_by, claim.name)
            return Outcome(Fate.BAD, f"the file could not be converted ({type(e).__name__}: {e})")
        session = SimulatedSession(self.submission.pipeline, conversion.item) if self.settings.run_receive_agents else None
        try:
            return await self._receive(claim, conversion, session)
        except StoreError as e:
            log.error("%s directory: could not queue %s (tried again later): %s", self.rules.received_by, claim.name, e)
            return Outcome(Fate.RETRY, str(e))
        except Exception as e:
            log.exception("%s directory: submitting %s failed", self.rules.received_by, claim.name)
            return Outcome(Fate.BAD, f"the message could not be submitted ({type(e).__name__}: {e})", conversion.item)
        finally:
            if session is not None:
                await session.close()

    async def _receive(self, claim: Claim, conversion: Conversion, session: SimulatedSession | None) -> Outcome:
        """The receive side for one file: command events, then the submission path."""
        item = conversion.item
        if session is not None:
            refused = await session.commands()
            if refused:
                return Outcome(Fate.BAD, refused, item)
        receipt = await self.submission.receive(
            item, conversion.received, trusted=conversion.trusted, run_agents=session is not None,
            claim=FileClaim(str(self.directory), os.fsencode(claim.path.name), claim.sha256))
        event = receipt.ended
        if event is not None and event.action is Action.DELETE:
            return Outcome(Fate.DELETED, f"{event.decided_by}: {event.reason}", item, kept=conversion.kept)
        if event is not None:
            if session is not None and event.response is not None:
                await session.rejected(event.response, "end of data")
            detail = f" ({event.reason})" if event.reason else ""
            return Outcome(Fate.BAD, f"{event.decided_by} rejected the message: "
                                  f"{event.response or 'disconnect'}{detail}", item)
        # recipients failed on the way in: FAIL is tracked by the submission path, their NDR sent by the categorizer
        return Outcome(Fate.QUEUED, item=item, internal_id=receipt.internal_id or 0, kept=conversion.kept)
