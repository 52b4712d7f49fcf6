"""The Sender Filter agent (Set-SenderFilterConfig): blocked senders, domains, subdomains and blank senders.

At MAIL FROM a blocked envelope sender is refused (`554 5.1.0 Sender denied`) or, with StampStatus, let through;
at end of headers the From and Sender addresses are judged the same way, and with BlankSenderBlockingEnabled a
message with a null reverse path and neither header is blocked. StampStatus records `Stamp.SENDER_BLOCKED` for the
content filter to raise the SCL (Exchange's Microsoft.Exchange.SenderBlocked property). Exchange's sender filter
does not look at the IP Allow list, so neither does this one.
"""

from __future__ import annotations

import enum

from pydantic import Field, field_validator

from agents import (AntispamAgent, AntispamConfig, EndOfHeadersEvent, MailFromEvent, SessionInfo, SmtpResponse, Stamp)
from transport.core.headers import addresses

__all__ = ["SenderFilterAgent", "SenderFilterAction", "SenderFilterConfig", "COUNTERS", "SENDER_DENIED"]

COUNTERS = "MSExchange Sender Filter Agent"
SENDER_DENIED = SmtpResponse(554, "5.1.0", "Sender denied")


class SenderFilterAction(str, enum.Enum):
    REJECT = "Reject"
    STAMP_STATUS = "StampStatus"


class SenderFilterConfig(AntispamConfig):
    """Set-SenderFilterConfig."""

    blocked_senders: list[str] = Field(default_factory=list, max_length=800, description="BlockedSenders: exact addresses.")
    blocked_domains: list[str] = Field(default_factory=list, description="BlockedDomains: exact domains (not their subdomains).")
    blocked_domains_and_subdomains: list[str] = Field(
        default_factory=list, description="BlockedDomainsAndSubdomains: a domain and every subdomain (written contoso.com or *.contoso.com).")
    blank_sender_blocking_enabled: bool = Field(
        False, description="BlankSenderBlockingEnabled: block a null reverse path with no From or Sender header.")
    action: SenderFilterAction = Field(SenderFilterAction.REJECT, description="Action: Reject (554 5.1.0) or StampStatus.")

    @field_validator("blocked_senders", "blocked_domains")
    @classmethod
    def _lower(cls, values: list[str]) -> list[str]:
        return [v.strip().lower() for v in values]

    @field_validator("blocked_domains_and_subdomains")
    @classmethod
    def _suffixes(cls, values: list[str]) -> list[str]:
        return [v.strip().lower().removeprefix("*.") for v in values]


class SenderFilterAgent(AntispamAgent):
    name = "Sender Filter Agent"
    description = "Blocks senders, domains and blank senders at MAIL FROM and in From/Sender."
    Config = SenderFilterConfig
    honours_allow_list = False

    def blocked(self, address: str) -> bool:
        cfg: SenderFilterConfig = self.config
        address = address.strip().lower()
        domain = address.rpartition("@")[2]
        return (address in cfg.blocked_senders or domain in cfg.blocked_domains
                or any(domain == d or domain.endswith("." + d) for d in cfg.blocked_domains_and_subdomains))

    def _count(self, name: str) -> None:
        self.context.counters.increment(COUNTERS, name)

    def _runs(self, session: SessionInfo) -> bool:
        return self.bypass(session) is None

    async def on_mail_from(self, event: MailFromEvent) -> None:
        if not event.sender or not self._runs(event.session) or not self.blocked(event.sender):
            return
        if self.config.action is SenderFilterAction.REJECT:
            self._count("Messages Filtered by Sender Filter")
            event.reject_command(SENDER_DENIED, f"blocked sender {event.sender}")

    async def on_end_of_headers(self, event: EndOfHeadersEvent) -> None:
        item = event.mail_item
        if not self._runs(event.session):
            return
        self._count("Messages Evaluated by Sender Filter")
        cfg: SenderFilterConfig = self.config
        if not (cfg.blocked_senders or cfg.blocked_domains or cfg.blocked_domains_and_subdomains) and (
                item.sender or not cfg.blank_sender_blocking_enabled):
            return  # nothing it could block: the From and Sender fields are not even parsed
        p2 = [addr for _, addr in addresses(item.header_values("From") + item.header_values("Sender")) if "@" in addr]
        hit = next((a for a in ([item.sender] if item.sender else []) + p2 if self.blocked(a)), None)
        if hit is None and not item.sender and not p2 and cfg.blank_sender_blocking_enabled:
            hit = "<>"
        if hit is None:
            return
        self._count("Messages Filtered by Sender Filter")
        reason = "blank sender" if hit == "<>" else f"blocked sender {hit}"
        if cfg.action is SenderFilterAction.REJECT:
            event.reject_message(SENDER_DENIED, reason)
        else:
            item.stamps[Stamp.SENDER_BLOCKED] = True
            event.stamp(reason)
