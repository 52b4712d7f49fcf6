"""The submission path: the one way every source puts a message into the Submission queue.

SMTP receive, the Pickup and Replay directories and agents that submit mail all hand their mail item to
`Submission.receive`, which does the same steps in the same order for each:

1. the header firewall and trace stamps (anonymous senders lose any X-MS-Exchange-Organization-* headers;
   every message gets its Received line, AuthAs, AuthSource, OriginalArrivalTime and, if missing, a Message-ID);
2. the message events, OnEndOfHeaders then OnEndOfData, whose agents may reject, delete, disconnect or
   quarantine (a verdict that ends the message is recorded in the tracking log as AGENTINFO);
3. the durable submit: the message (and the claim record of the file it came from, if any) is committed to
   the Submission queue, RECEIVE and the agents' other verdicts are tracked, and the categorizer is fed.

Only the answer differs between sources: an SMTP client gets a reply, a dropped file goes to badmail or away.
Back pressure is asked by each source where it takes new work (MAIL FROM, claiming files).
"""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timezone
from typing import Callable

from queues.store import QueueStore

from .core.config import TransportConfig
from .core.events import Action, EndOfDataEvent, EndOfHeadersEvent, MessageEvent
from .core.headers import FOREST_HEADER_PREFIX, ORGANIZATION_HEADER_PREFIX, SERVER_VERSION, date_now
from .core.internal_servers import is_internal, parse_internal_servers
from .core.mailitem import AuthAs, MailItem, ReverseDns, SessionInfo, Source, Stamp, new_message_id
from .core.pipeline import Pipeline
from .core.sources import FileClaim, Receipt
from .core.tracking import TrackingEvent, TrackingLog

__all__ = ["Submission", "SubmissionSteps", "received_header"]

log = logging.getLogger("transport.submission")


def received_header(session: SessionInfo, fqdn: str) -> str:
    """The value of the Received header this hub adds for an SMTP hop (Exchange 2013+ layout)."""
    with_ = "Microsoft SMTP Server" + (" (TLS)" if session.tls else "")
    remark = f" {session.reverse_dns}" if session.reverse_dns and session.reverse_dns != ReverseDns.VERIFIED else ""
    return (f"from {session.helo or 'unknown'} ([{session.client_ip}]{remark}) by {fqdn} ([{session.server_ip}])"
            f" with {with_} id {SERVER_VERSION}; {date_now()}")


def _authserv_id(value: str) -> str:
    """The authserv-id an Authentication-Results value starts with (RFC 8601 §2.2), lower-cased."""
    return value.split(";", 1)[0].strip().split()[0].lower() if value.strip() else ""


class SubmissionSteps:
    """The steps before the queue: the header firewall and trace stamps, then the message events. `transport
    trace` runs these alone (its tracking log is switched off), so it judges a message as the hub would."""

    def __init__(self, config: TransportConfig, pipeline: Pipeline, tracking: TrackingLog) -> None:
        self.config = config
        self.pipeline = pipeline
        self.tracking = tracking
        self._internal = parse_internal_servers(config.internal_smtp_servers)

    def is_internal(self, ip: str) -> bool:
        return is_internal(ip, self._internal)

    def stamp(self, item: MailItem, received: str | None = None) -> None:
        """Trace and organisation headers every received message gets, and the header firewall.

        A session without the right (Ms-Exch-Accept-Headers-Organization/-Forest: authenticated users, internal
        servers, ExchangeServers connectors) loses X-MS-Exchange-Organization-* and X-MS-Exchange-Forest-* headers
        and any Authentication-Results naming our own authserv-id, before any agent reads them: no sender can
        preset its SCL or its Sender ID result.
        """
        s = item.session
        fqdn = self.config.receive.fqdn
        if not (s.authenticated or s.internal or s.antispam_bypass):
            item.remove_headers([ORGANIZATION_HEADER_PREFIX, FOREST_HEADER_PREFIX], prefix=True)
            item.remove_fields(lambda h: h.key == "authentication-results" and _authserv_id(h.value) == fqdn.lower())
        item.prepend_headers([("Received", received or received_header(s, fqdn))])
        stamps = [
            (ORGANIZATION_HEADER_PREFIX + "AuthAs", s.auth_as.value),
            (ORGANIZATION_HEADER_PREFIX + "AuthSource", fqdn),
            (ORGANIZATION_HEADER_PREFIX + "OriginalArrivalTime",
             datetime.now(timezone.utc).strftime("%d %b %Y %H:%M:%S.%f")[:-2] + " (UTC)"),
        ]
        if s.authenticated:
            stamps.append(("X-Originating-IP", f"[{s.client_ip}]"))
        if not item.message_id:
            stamps.append(("Message-ID", new_message_id(fqdn)))
        item.append_headers(stamps)

    async def message_events(self, item: MailItem) -> MessageEvent | None:
        """Fire OnEndOfHeaders, then OnEndOfData; the event whose agent ended the message, or None to submit.

        The returned event's action is REJECT (with its response), DELETE or DISCONNECT. A quarantine stamps the
        message (SCL 9, the reason) and lets it go on.
        """
        for event_cls in (EndOfHeadersEvent, EndOfDataEvent):
            if not self.pipeline.has(event_cls.name):
                continue
            event = await self.pipeline.run(event_cls(item.session, item))
            if event.action is Action.QUARANTINE:
                item.scl = 9
                item.stamps[Stamp.QUARANTINE] = event.reason
                return None
            if event.action in (Action.REJECT, Action.DELETE, Action.DISCONNECT):
                what = {Action.REJECT: event.reason, Action.DELETE: f"deleted {event.reason}",
                        Action.DISCONNECT: "disconnect"}[event.action]
                self.tracking.log(TrackingEvent.AGENTINFO, item, "AGENT", recipient_status=str(event.response or ""),
                                  source_context=item.session.session_id,
                                  custom_data=f"{event.decided_by}: {what}".rstrip())
                return event
        return None


class Submission(SubmissionSteps):
    """Built once by the hub; every source holds it (see `transport.core.sources.SubmissionPath`)."""

    def __init__(self, config: TransportConfig, pipeline: Pipeline, store: QueueStore, tracking: TrackingLog,
                 categorize: Callable[[MailItem], None], backlog: Callable[[], int]) -> None:
        super().__init__(config, pipeline, tracking)
        self.store = store
        self.claims = store
        self.spool_folder = store.spool_folder
        self._categorize = categorize
        self._backlog = backlog
        self._pressure = False
        self._disk_low = False

    # -- facts sources ask ----------------------------------------------------------------------------
    @property
    def back_pressure(self) -> bool:
        """On when the Submission queue passes max_submission_queue_length or free disk under the data root is
        below min_free_disk_space; off again once the queue is back under 80 % of the limit and disk is free."""
        limit = self.config.queue.max_submission_queue_length
        backlog = self._backlog()
        if not self._pressure and (backlog > limit or self._disk_low):
            self._pressure = True
            log.warning("back pressure on: Submission queue %d (limit %d), disk low: %s", backlog, limit, self._disk_low)
        elif self._pressure and backlog <= limit * 0.8 and not self._disk_low:
            self._pressure = False
            log.info("back pressure off")
        return self._pressure

    def check_disk(self) -> None:
        """Look at free disk under the data root (the hub's housekeeping calls this twice a second)."""
        try:
            free = shutil.disk_usage(self.config.data_root).free
        except OSError:
            return
        self._disk_low = free < self.config.queue.min_free_disk_space

    # -- the path -------------------------------------------------------------------------------------
    async def receive(self, item: MailItem, received: str | None = None, trusted: bool = False,
                      run_agents: bool = True, claim: FileClaim | None = None) -> Receipt:
        """Stamp the message, run its message events, queue it durably.

        `received` replaces the SMTP Received line (the directories write their own); a `trusted` message (a
        replay file this hub wrote) keeps its stamps and only gets the Received line. `claim` is committed with
        the message. Raises StoreError when the queue database cannot take it.
        """
        if trusted:
            item.prepend_headers([("Received", received or received_header(item.session, self.config.receive.fqdn))])
        else:
            self.stamp(item, received)
        if run_agents:
            ended = await self.message_events(item)
            if ended is not None:
                return Receipt(ended=ended)
        return Receipt(internal_id=await self.submit(item, claim))

    async def submit_generated(self, item: MailItem) -> int:
        """A message an agent made (a journal report, an auto-reply): trusted as the organisation's own,
        stamped, queued with source AGENT; no receive events run on it, as in Exchange."""
        item.source = Source.AGENT
        item.session.auth_as = AuthAs.INTERNAL
        item.session.internal = True
        receipt = await self.receive(item, received=f"from {self.config.receive.fqdn} by {self.config.receive.fqdn}"
                                     f" with Microsoft SMTP Server id {SERVER_VERSION} (agent submission);"
                                     f" {date_now()}", run_agents=False)
        assert receipt.internal_id is not None
        return receipt.internal_id

    async def submit(self, item: MailItem, claim: FileClaim | None = None) -> int:
        """Durably queue a message in the Submission queue; returns its internal id once committed."""
        internal_id = await self.store.enqueue(item, claim=claim)
        self.tracking.log(TrackingEvent.RECEIVE, item, item.source.value, connector_id=item.session.connector or self.config.receive.name,
                          source_context=item.session.session_id)
        if item.verdicts:  # what the receive agents did that let the message go on (stamps, errors)
            self.tracking.log(TrackingEvent.AGENTINFO, item, "AGENT", source_context=item.session.session_id, custom_data="; ".join(
                f"{v.agent}: {v.action} at {v.event}" + (f" ({v.reason})" if v.reason else "") for v in item.verdicts))
        self._categorize(item)
        return internal_id
