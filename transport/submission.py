"""The submission path: the one way every source puts a message into the Submission queue.

SMTP receive, the Pickup and Replay directories, the store driver (mailbox Outboxes) and agents that submit
mail all hand their mail item to `Submission.receive`, which does the same steps in the same order for each:

1. the header firewall and trace stamps (anonymous senders lose any X-MS-Exchange-Organization-* headers;
   every message gets its Received line, AuthAs, AuthSource, OriginalArrivalTime and, if missing, a Message-ID);
   for an authenticated SMTP client, the Send As check of its From (`transport.send_as`: 550 5.7.60);
2. the message events, OnEndOfHeaders then OnEndOfData, whose agents may reject, delete, disconnect or
   quarantine (a verdict that ends the message is recorded in the tracking log as AGENTINFO);
3. the durable submit: the message (and the claim record of the file it came from, if any) is committed to
   the Submission queue, RECEIVE (and FAIL for recipients already failed) and the agents' other verdicts are
   tracked, and the categorizer is fed (or, when it routed the message ahead, the message was committed
   straight into its delivery queues and is handed to them).

Only the answer differs between sources: an SMTP client gets a reply, a dropped file goes to badmail or away.
Back pressure is asked by each source where it takes new work (MAIL FROM, claiming files).
"""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timezone
from typing import Callable, Protocol

from queues.store import QueueStore

from .core.clock import Clock, real_time
from .core.config import TransportConfig
from .core.events import Action, EndOfDataEvent, EndOfHeadersEvent, MessageEvent
from .core.headers import (FOREST_HEADER_PREFIX, GENERATED_MESSAGE_SOURCE, ORGANIZATION_HEADER_PREFIX, SERVER_VERSION,
                           Header, date_now)
from .core.internal_servers import is_internal, parse_internal_servers
from .core.mailitem import AuthAs, MailItem, RecipientStatus, ReverseDns, SessionInfo, Source, Stamp, new_message_id
from .core.pipeline import Pipeline
from .core.sources import FileClaim, Receipt
from .core.tracking import TrackingEvent, TrackingLog
from .send_as import smtp_refusal

__all__ = ["Submission", "SubmissionSteps", "received_header"]

log = logging.getLogger("transport.submission")

QUARANTINED = "550 5.2.1 Content Filter agent quarantined this message"
"""The recipient status of a REDIRECT to the quarantine mailbox (Exchange's DSN text for a quarantine)."""


def received_header(session: SessionInfo, fqdn: str) -> str:
    """The value of the Received header this hub adds for an SMTP hop (Exchange 2013+ layout)."""
    with_ = "Microsoft SMTP Server" + (" (TLS)" if session.tls else "")
    remark = f" {session.reverse_dns}" if session.reverse_dns and session.reverse_dns != ReverseDns.VERIFIED else ""
    return (f"from {session.helo or 'unknown'} ([{session.client_ip}]{remark}) by {fqdn} ([{session.server_ip}])"
            f" with {with_} id {SERVER_VERSION}; {date_now()}")


_FIREWALLED = (ORGANIZATION_HEADER_PREFIX.lower(), FOREST_HEADER_PREFIX.lower())
"""The header firewall's prefixes, as a header field's lower-cased `key` starts."""


def _authserv_id(value: str) -> str:
    """The authserv-id an Authentication-Results value starts with (RFC 8601 §2.2), lower-cased."""
    return next(iter(value.split(";", 1)[0].split()), "").lower()


def _firewalled(own: str) -> Callable[[Header], bool]:
    """The header firewall's test of a field, on a hub whose authserv-id is `own`: organisation and forest
    headers, and an Authentication-Results that names us."""
    return lambda h: h.key.startswith(_FIREWALLED) or (h.key == "authentication-results" and _authserv_id(h.value) == own)


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
        firewall = None if s.authenticated or s.internal or s.antispam_bypass else _firewalled(fqdn.lower())
        stamps = [
            (ORGANIZATION_HEADER_PREFIX + "AuthAs", s.auth_as.value),
            (ORGANIZATION_HEADER_PREFIX + "AuthSource", fqdn),
            (ORGANIZATION_HEADER_PREFIX + "OriginalArrivalTime",
             datetime.fromtimestamp(item.received_at, timezone.utc).strftime("%d %b %Y %H:%M:%S.%f")[:-2] + " (UTC)"),
        ]
        if s.authenticated:
            stamps.append(("X-Originating-IP", f"[{s.client_ip}]"))
        if not item.message_id:
            stamps.append(("Message-ID", new_message_id(fqdn)))
        item.edit_headers(firewall, prepend=[("Received", received or received_header(s, fqdn))], append=stamps)

    async def message_events(self, item: MailItem) -> MessageEvent | None:
        """Fire OnEndOfHeaders, then OnEndOfData; the event whose agent ended the message, or None to submit.

        The returned event's action is REJECT (with its response), DELETE or DISCONNECT. A quarantine lets the
        message go on: the agent marked the recipients whose copies mailbox delivery sends to the quarantine
        mailbox (see `submit`).
        """
        for event_cls in (EndOfHeadersEvent, EndOfDataEvent):
            if not self.pipeline.has(event_cls.name):
                continue
            event = await self.pipeline.run(event_cls(item.session, item))
            if event.action is Action.QUARANTINE:
                return None
            if event.action in (Action.REJECT, Action.DELETE, Action.DISCONNECT):
                what = {Action.REJECT: event.reason, Action.DELETE: f"deleted {event.reason}",
                        Action.DISCONNECT: "disconnect"}[event.action]
                self.tracking.log(TrackingEvent.AGENTINFO, item, "AGENT", recipient_status=str(event.response or ""),
                                  source_context=item.session.session_id,
                                  custom_data=f"{event.decided_by}: {what}".rstrip())
                return event
        return None


class Categorizing(Protocol):
    """The categorizer (`transport.categorizer.Categorizer`) as the submission path sees it."""

    @property
    def backlog(self) -> int:
        """Messages waiting for or in categorization."""

    def route_ahead(self, item: MailItem) -> dict[str, list[str]] | None:
        """The message's delivery queues (next hop → recipients) if it can be routed before it is queued."""

    def routed(self, item: MailItem, deliveries: dict[str, list[str]], ids: dict[str, int]) -> None:
        """A message committed straight into its delivery queues (`ids`: next hop → queue item id)."""

    def push(self, item: MailItem) -> None:
        """A message committed to the Submission queue, to categorize."""


class Submission(SubmissionSteps):
    """Built once by the hub; every source holds it (see `transport.core.sources.SubmissionPath`). A message's
    arrival time (`received_at`: its OriginalArrivalTime, the start of its expiry and delay timeouts) is read from
    `clock`, the hub's, as the path takes it."""

    def __init__(self, config: TransportConfig, pipeline: Pipeline, store: QueueStore, tracking: TrackingLog,
                 categorizer: Categorizing, clock: Clock = real_time) -> None:
        super().__init__(config, pipeline, tracking)
        self.clock = clock
        self.store = store
        self.claims = store
        self.spool_folder = store.spool_folder
        self.categorizer = categorizer
        self._pressure = False
        self._disk_low = False

    # -- facts sources ask ----------------------------------------------------------------------------
    @property
    def back_pressure(self) -> bool:
        """On when the Submission queue passes max_submission_queue_length or free disk under the data root is
        below min_free_disk_space; off again once the queue is back under 80 % of the limit and disk is free."""
        limit = self.config.queue.max_submission_queue_length
        backlog = self.categorizer.backlog
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
        item.received_at = self.clock()
        if trusted:
            item.prepend_headers([("Received", received or received_header(item.session, self.config.receive.fqdn))])
        else:
            self.stamp(item, received)
        if item.source is Source.SMTP and item.session.authenticated:
            refused = self._send_as_refused(item)
            if refused is not None:
                return Receipt(ended=refused)
        if run_agents:
            ended = await self.message_events(item)
            if ended is not None:
                return Receipt(ended=ended)
        return Receipt(internal_id=await self.submit(item, claim))

    def _send_as_refused(self, item: MailItem) -> EndOfDataEvent | None:
        """An AUTH user's message whose From is a mailbox that did not grant it Send As: refused at end of data
        (550 5.7.60), tracked as FAIL (see `transport.send_as`)."""
        response = smtp_refusal(self.config, item)
        if response is None:
            return None
        event = EndOfDataEvent(item.session, item)
        event.reject_message(response, f"{item.session.auth_user} may not send as {item.header('From')}")
        self.tracking.log(TrackingEvent.FAIL, item, item.source.value, recipient_status=str(response),
                          source_context=item.session.session_id, connector_id=item.session.connector)
        return event

    async def submit_from_agent(self, item: MailItem, agent: str, cause: MailItem | None = None) -> int | None:
        """A message an agent made (a journal report, an auto-reply), marked with the agent
        (`X-MS-Exchange-Organization-Generated-Message-Source`; the pipeline never hands it back to that agent)
        and submitted with source AGENT (`submit_generated`).

        A chain of agent-made messages (one made because of another) longer than agent_submission.max_hop_count
        is refused: None is returned and AGENTINFO tracked on the causing message, so agents cannot loop."""
        hops = (int(cause.stamps.get(Stamp.AGENT_HOPS, 0)) if cause is not None else 0) + 1
        limit = self.config.agent_submission.max_hop_count
        if hops > limit:
            log.warning("agent %r: submit refused, %d agent-made messages in the chain (max_hop_count %d)", agent,
                        hops, limit)
            if cause is not None:
                self.tracking.log(TrackingEvent.AGENTINFO, cause, "AGENT", custom_data=f"{agent}: submit refused: agent hop "
                                  f"count {hops} over agent_submission.max_hop_count ({limit})")
            return None
        item.session.session_id = item.session.session_id or agent
        item.stamps[Stamp.GENERATED_BY] = agent
        item.stamps[Stamp.AGENT_HOPS] = hops
        if cause is not None:
            item.stamps[Stamp.CAUSE] = cause.message_id or f"InternalId={cause.internal_id}"
        item.set_header(GENERATED_MESSAGE_SOURCE, agent)
        return await self.submit_generated(item, Source.AGENT)

    async def submit_generated(self, item: MailItem, source: Source = Source.AGENT) -> int:
        """A message the hub or an agent made (a DSN, a journal report, an auto-reply): trusted as the
        organisation's own, stamped, queued with its source (AGENT, or DSN for delivery reports); no receive
        events run on it, as in Exchange."""
        item.source = source
        item.session.auth_as = AuthAs.INTERNAL
        item.session.internal = True
        how = "agent submission" if source is Source.AGENT else source.value
        receipt = await self.receive(item, received=f"from {self.config.receive.fqdn} by {self.config.receive.fqdn}"
                                     f" with Microsoft SMTP Server id {SERVER_VERSION} ({how});"
                                     f" {date_now()}", run_agents=False)
        assert receipt.internal_id is not None
        return receipt.internal_id

    async def submit(self, item: MailItem, claim: FileClaim | None = None) -> int:
        """Durably queue a message in the Submission queue; returns its internal id once committed."""
        deliveries = self.categorizer.route_ahead(item)
        ids: dict[str, int] = {}  # next hop → queue item, when routed ahead
        if deliveries is None:
            internal_id = await self.store.enqueue(item, claim=claim)
        else:
            ids = await self.store.enqueue_routed(item, deliveries, claim)
            internal_id = item.internal_id
        made_by = item.stamps.get(Stamp.GENERATED_BY)
        self.tracking.log(TrackingEvent.RECEIVE, item, item.source.value,
                          connector_id=item.session.connector or self.config.receive.name,
                          source_context=item.session.session_id, reference=item.stamps.get(Stamp.CAUSE, ""),
                          custom_data=f"submitted by agent {made_by}" if made_by else "")
        for r in item.recipients:  # failed before the queue had it (an agent, a bad address, Send As refused)
            if r.status is RecipientStatus.FAILED:
                self.tracking.log(TrackingEvent.FAIL, item, item.source.value, [r.address], r.response,
                                  source_context=item.session.session_id)
        if item.verdicts:  # what the receive agents did that let the message go on (stamps, errors)
            self.tracking.log(TrackingEvent.AGENTINFO, item, "AGENT", source_context=item.session.session_id, custom_data="; ".join(
                f"{v.agent}: {v.action} at {v.event}" + (f" ({v.reason})" if v.reason else "") for v in item.verdicts))
        quarantine = self.config.organization.quarantine_mailbox
        for address, why in (item.stamps.get(Stamp.QUARANTINE) or {}).items() if quarantine else ():
            self.tracking.log(TrackingEvent.REDIRECT, item, "AGENT", [address], QUARANTINED, related_recipient=quarantine,
                              source_context=item.session.session_id, custom_data=why)
        if deliveries is None:
            self.categorizer.push(item)
        else:
            self.categorizer.routed(item, deliveries, ids)
        return internal_id
