"""The content filter agent (Exchange's ContentFilterAgent): at end of data, give every message an SCL and act on it.

Order of work, as Exchange does it: a valid SCL already on the message (set by an earlier agent, or stamped by a
trusted source the header firewall let through) is kept; sessions holding the bypass right and internal servers
get SCL -1, as do bypassed senders, sender domains and messages whose recipients are all bypassed; messages over
`max_scan_size` are not scanned. Everything else is scored by the rules (:mod:`.rules`), and the SCL meets
Exchange's actions per recipient (`transport.core.scl`: the filter's thresholds, each overridden by the
recipient's mailbox): delete, reject, quarantine, or delivery, which files it in Junk when the SCL is above
SCLJunkThreshold. Bypassed recipients always get the message.
"""

from __future__ import annotations

import enum
import sqlite3

from agents import (ORGANIZATION_HEADER_PREFIX, AgentContext, AntispamAgent, Bypass, EndOfDataEvent, MailItem,
                    SessionInfo, SmtpResponse, Stamp)
from agents.senderid import originating_ip, parse_internal_servers
from transport.core.scl import SclAction

from .bayes import Classifier
from .config import ContentFilterConfig
from .message import MessageView, first_address
from .rules import Site, build_rules
from .scan import EXPLANATION_HEADER, Scan, scan

__all__ = ["ContentFilterAgent", "ContentBypass", "COUNTERS", "REPORT_HEADER", "PCL_HEADER"]

COUNTERS = "MSExchange Content Filter Agent"
REPORT_HEADER = ORGANIZATION_HEADER_PREFIX + "Antispam-Report"
PCL_HEADER = ORGANIZATION_HEADER_PREFIX + "PCL"
DEFINITIONS_VERSION = "1.0"
"""The DV token: the version of our rule set, where Exchange names its filter definitions."""
REPORT_LIMIT = 1024
"""Exchange's longest Antispam-Report."""


class ContentBypass(str, enum.Enum):
    """Why a message was not scanned: Exchange's Antispam-Report words."""

    BYPASS_RIGHT = Bypass.BYPASS_RIGHT.value
    SENDER = "ContentFilterConfigBypassedSender"
    RECIPIENT = "ContentFilterConfigBypassedRecipient"


class ContentFilterAgent(AntispamAgent):
    name = "Content Filter Agent"
    description = "Scores every message with named rules into an SCL, then deletes, rejects or lets it go to Inbox or Junk."
    Config = ContentFilterConfig

    def __init__(self, config: ContentFilterConfig, context: AgentContext) -> None:
        super().__init__(config, context)
        site = Site(context.server_fqdn, tuple(d.domain for d in context.config.accepted_domains),
                    self._classifier() if config.bayes_enabled else None)
        self.rules = build_rules(config, site)
        self.internal = parse_internal_servers(context.config.internal_smtp_servers)
        self.rejection = SmtpResponse(550, "5.7.1", config.rejection_response)
        self.thresholds = config.thresholds(context.config)

    def _classifier(self) -> Classifier | None:
        """The trained classifier from the data root; a file that is not one is logged and the rule stays off."""
        path = self.context.config.data_root / self.config.bayes_database
        try:
            classifier = Classifier(path)
        except sqlite3.DatabaseError as e:
            self.log.error("cannot read the Bayes database %s (%s): the bayes rule is off", path, e)
            return None
        self.log.info("Bayes classifier: %d ham and %d spam messages learnt (%s)", classifier.ham, classifier.spam, path)
        return classifier

    def _count(self, name: str) -> None:
        self.context.counters.increment(COUNTERS, name)

    def scan(self, item: MailItem) -> Scan:
        """Score a message (the caller keeps messages over max_scan_size away)."""
        return scan(self.rules, MessageView.of(item, item.content()))

    def action(self, scl: int, address: str) -> SclAction:
        """What the SCL does to the copy for `address`: the filter's thresholds, overridden by its mailbox's."""
        return self.thresholds.for_mailbox(self.context.config.mailbox(address)).action(scl)

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

    def _report(self, item: MailItem, session: SessionInfo, tokens: list[str]) -> str:
        """Antispam-Report in Exchange's token format, at most 1024 characters; it always ends with the
        originating IP (tokens that would not fit are left out, never the IP)."""
        ip = originating_ip(session.client_ip, self.internal, item.header_values("Received")) if session.client_ip else None
        tail = f"OrigIP:{ip or 'unavailable'}"
        while tokens and len(";".join(tokens + [tail])) > REPORT_LIMIT:
            tokens = tokens[:-1]
        return ";".join(tokens + [tail])

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
            item.set_scl(-1, [(REPORT_HEADER, self._report(item, session, [why.value]))])
            event.stamp(f"SCL -1: not scanned ({why.value})")
            return
        if item.size > cfg.max_scan_size:
            self._count("Messages with SCL Unknown")
            event.stamp(f"not scanned: {item.size} bytes is over max_scan_size ({cfg.max_scan_size})")
            return
        result = self.scan(item)
        self._count("Messages Scanned")
        self._count(f"Messages with SCL {result.scl}")
        item.stamps[Stamp.SCL_RULES] = result.as_dict()
        tokens = [f"DV:{DEFINITIONS_VERSION}"]
        if Stamp.SENDER_ID_RESULT in item.stamps:
            tokens.append(f"SID:SenderIDStatus {item.stamps[Stamp.SENDER_ID_RESULT]}")
        if result.suspicious:
            tokens.append("PCL:PhishingLevel SUSPICIOUS")
        if any(h.forces_scl is not None for h in result.hits):
            tokens.append("CW:CustomList")
        reason = result.explanation()
        item.set_scl(result.scl, [(PCL_HEADER, str(result.pcl)), (EXPLANATION_HEADER, reason),
                                  (REPORT_HEADER, self._report(item, session, tokens))])
        self._act(event, result, reason)

    def _act(self, event: EndOfDataEvent, result: Scan, reason: str) -> None:
        """Each recipient's action; bypassed recipients get the message whatever the others' fate. `reason` is
        the scan's explanation (made once: it is both the header and the verdict)."""
        item = event.mail_item
        kept = self.bypassed(item.recipients)
        actions: dict[SclAction, list[str]] = {}
        for r in item.recipients:
            action = SclAction.INBOX if r.address.lower() in kept else self.action(result.scl, r.address)
            actions.setdefault(action, []).append(r.address)
        for action, counter in ((SclAction.DELETE, "Messages Deleted"), (SclAction.REJECT, "Messages Rejected"),
                                (SclAction.QUARANTINE, "Messages Quarantined")):
            if action in actions:
                self._count(counter)
        if SclAction.QUARANTINE in actions:
            item.quarantine(actions[SclAction.QUARANTINE], f"{event.agent}: {reason}")
        rejected, deleted = actions.get(SclAction.REJECT, []), actions.get(SclAction.DELETE, [])
        if rejected or deleted:
            self.act_per_recipient(event, reason, self.rejection, rejected=rejected, deleted=deleted)
        else:
            event.stamp(reason + (f"; {len(actions[SclAction.QUARANTINE])} recipient(s) quarantined"
                                  if SclAction.QUARANTINE in actions else ""))


def _in_domains(domain: str, listed: list[str]) -> bool:
    return any(domain == d or (d.startswith("*.") and (domain == d[2:] or domain.endswith(d[1:]))) for d in listed)
