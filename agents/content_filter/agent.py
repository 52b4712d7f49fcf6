"""The content filter agent (Exchange's ContentFilterAgent): at end of data, give every message an SCL and act on it.

Order of work, as Exchange does it: a valid SCL already on the message (set by an earlier agent, or stamped by a
trusted source the header firewall let through) is kept; sessions holding the bypass right and internal servers
get SCL -1, as do bypassed senders, sender domains and messages whose recipients are all bypassed; messages over
`max_scan_size` are not scanned. Everything else is scored by the rules (:mod:`.rules`), and the SCL meets
Exchange's actions: delete at or above scl_delete_threshold, reject at or above scl_reject_threshold, otherwise
the SCL goes on the message and mailbox delivery files it in Junk when it is above SCLJunkThreshold.
"""

from __future__ import annotations

import enum

from agents import (ORGANIZATION_HEADER_PREFIX, AgentContext, AntispamAgent, Bypass, EndOfDataEvent, MailItem,
                    RecipientStatus, SessionInfo, SmtpResponse, Stamp)
from agents.senderid import originating_ip, parse_internal_servers

from .config import ContentFilterConfig
from .message import MessageView, first_address
from .rules import Site, build_rules
from .scan import EXPLANATION_HEADER, Scan, scan

__all__ = ["ContentFilterAgent", "ContentAction", "ContentBypass", "COUNTERS", "REPORT_HEADER"]

COUNTERS = "MSExchange Content Filter Agent"
REPORT_HEADER = ORGANIZATION_HEADER_PREFIX + "Antispam-Report"
DEFINITIONS_VERSION = "1.0"
"""The DV token: the version of our rule set, where Exchange names its filter definitions."""


class ContentBypass(str, enum.Enum):
    """Why a message was not scanned: Exchange's Antispam-Report words."""

    BYPASS_RIGHT = Bypass.BYPASS_RIGHT.value
    SENDER = "ContentFilterConfigBypassedSender"
    RECIPIENT = "ContentFilterConfigBypassedRecipient"


class ContentAction(str, enum.Enum):
    """What the thresholds make of an SCL."""

    DELETE = "Delete"
    REJECT = "Reject"
    ACCEPT = "Accept"   # delivered: Inbox, or Junk when the SCL is above the mailbox's SCLJunkThreshold


class ContentFilterAgent(AntispamAgent):
    name = "Content Filter Agent"
    description = "Scores every message with named rules into an SCL, then deletes, rejects or lets it go to Inbox or Junk."
    Config = ContentFilterConfig

    def __init__(self, config: ContentFilterConfig, context: AgentContext) -> None:
        super().__init__(config, context)
        site = Site(context.server_fqdn, tuple(d.domain for d in context.config.accepted_domains))
        self.rules = build_rules(config, site)
        self.internal = parse_internal_servers(context.config.internal_smtp_servers)
        self.rejection = SmtpResponse(550, "5.7.1", config.rejection_response)

    def _count(self, name: str) -> None:
        self.context.counters.increment(COUNTERS, name)

    def scan(self, item: MailItem) -> Scan:
        """Score a message (the caller keeps messages over max_scan_size away)."""
        return scan(self.rules, MessageView.of(item, item.content()))

    def action(self, scl: int) -> ContentAction:
        """Exchange's order: delete, then reject, each at or above its threshold when enabled."""
        cfg: ContentFilterConfig = self.config
        if cfg.scl_delete_enabled and scl >= cfg.scl_delete_threshold:
            return ContentAction.DELETE
        if cfg.scl_reject_enabled and scl >= cfg.scl_reject_threshold:
            return ContentAction.REJECT
        return ContentAction.ACCEPT

    def _bypass(self, item: MailItem, session: SessionInfo) -> ContentBypass | None:
        cfg: ContentFilterConfig = self.config
        if session.internal or self.bypass(session) is Bypass.BYPASS_RIGHT:
            return ContentBypass.BYPASS_RIGHT
        senders = [a for a in (item.sender.lower(), first_address(item, "From")[1]) if a]
        if any(s in cfg.bypassed_senders or _in_domains(s.rpartition("@")[2], cfg.bypassed_sender_domains)
               for s in senders):
            return ContentBypass.SENDER
        if item.recipients and len(self.bypassed(item.recipients)) == len(item.recipients):
            return ContentBypass.RECIPIENT
        return None

    def _report(self, item: MailItem, session: SessionInfo, tokens: list[str]) -> None:
        """Antispam-Report in Exchange's token format; it always ends with the originating IP (its length is
        bounded: a handful of fixed tokens and one IP, far below Exchange's 1024 characters)."""
        ip = originating_ip(session.client_ip, self.internal, item.header_values("Received")) if session.client_ip else None
        item.set_header(REPORT_HEADER, ";".join(tokens + [f"OrigIP:{ip or 'unavailable'}"]))

    async def on_end_of_data(self, event: EndOfDataEvent) -> None:
        cfg: ContentFilterConfig = self.config
        item, session = event.mail_item, event.session
        if item.scl is None:
            preset = item.header(ORGANIZATION_HEADER_PREFIX + "SCL")
            if preset is not None and preset.strip().lstrip("-").isdigit() and -1 <= int(preset) <= 9:
                item.scl = int(preset)
        if item.scl is not None:
            self._count("Messages with a Preexisting SCL")
            event.stamp(f"kept the SCL {item.scl} already on the message")
            return
        gate = self.bypass(session)
        if gate not in (None, Bypass.BYPASS_RIGHT):  # not on this connector, or external mail not checked
            self._count("Messages that Bypassed Scanning")
            return
        why = self._bypass(item, session)
        if why is not None:
            self._count("Messages that Bypassed Scanning")
            item.scl = -1
            self._report(item, session, [why.value])
            event.stamp(f"SCL -1: not scanned ({why.value})")
            return
        if item.size > cfg.max_scan_size:
            self._count("Messages with SCL Unknown")
            event.stamp(f"not scanned: {item.size} bytes is over max_scan_size ({cfg.max_scan_size})")
            return
        result = self.scan(item)
        self._count("Messages Scanned")
        self._count(f"Messages with SCL {result.scl}")
        item.scl = result.scl
        item.stamps[Stamp.SCL_RULES] = result.as_dict()
        item.set_header(EXPLANATION_HEADER, result.explanation())
        tokens = [f"DV:{DEFINITIONS_VERSION}"]
        if Stamp.SENDER_ID_RESULT in item.stamps:
            tokens.append(f"SID:SenderIDStatus {item.stamps[Stamp.SENDER_ID_RESULT]}")
        if any(h.forces_scl is not None for h in result.hits):
            tokens.append("CW:CustomList")
        self._report(item, session, tokens)
        reason = result.explanation()
        action = self.action(result.scl)
        if action is ContentAction.ACCEPT:
            event.stamp(reason)
            return
        self._count("Messages Deleted" if action is ContentAction.DELETE else "Messages Rejected")
        self._act(event, reason, delete=action is ContentAction.DELETE)

    def _act(self, event: EndOfDataEvent, reason: str, delete: bool) -> None:
        """Delete or reject; recipients on bypassed_recipients still get the message, the others do not."""
        item = event.mail_item
        kept = self.bypassed(item.recipients)
        if not kept and delete:
            event.delete_message(reason)
            return
        if not kept:
            event.reject_message(self.rejection, reason)
            return
        for r in item.recipients:
            if r.address.lower() not in kept:
                r.status, r.response = RecipientStatus.FAILED, "" if delete else str(self.rejection)
        if delete:
            item.recipients = [r for r in item.recipients if r.address.lower() in kept]
        event.stamp(f"{reason}; {'deleted' if delete else 'rejected'} but for bypassed recipients")


def _in_domains(domain: str, listed: list[str]) -> bool:
    return any(domain == d or (d.startswith("*.") and (domain == d[2:] or domain.endswith(d[1:]))) for d in listed)
