"""The Sender ID agent (Exchange's SenderIdAgent): at end of headers, check the PRA against the IP that
really handed the message to the organisation, stamp the verdict, and reject or delete spoofed mail as
configured (Set-SenderIdConfig).

Order of work, as Exchange does it: skip what the common anti-spam gate says to skip (sessions holding the bypass
right, IP Allow list hits: `AntispamAgent.bypass`), mail for bypassed recipients only, and messages with no
originating IP; find the PRA (RFC 4407) and stamp
`X-MS-Exchange-Organization-PRD`; stop for bypassed sender domains; look up the PRA domain's Sender ID or SPF
record (RFC 4406) and stamp `X-MS-Exchange-Organization-SenderIdResult`, `Received-SPF` and — beyond
Exchange — `Authentication-Results`. Only Fail and TempError lead to an action.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict

from pydantic import Field, field_validator

from agents import (ORGANIZATION_HEADER_PREFIX, AntispamAgent, EndOfHeadersEvent, RecipientBypassConfig,
                    SmtpResponse, Stamp, fields_named)

from .origin import originating_ip, parse_internal_servers
from .pra import find_pra
from .received_spf import EXCHANGE_STATUS, authentication_results, received_spf
from .spf import DOMAIN_DOES_NOT_EXIST, MALFORMED_DOMAIN, SpfChecker, SpfResult

__all__ = ["SenderIdAgent", "SenderIdAction", "COUNTERS"]

COUNTERS = "MSExchange Sender Id Agent"
ORG = ORGANIZATION_HEADER_PREFIX
_FAIL_TEXT = {MALFORMED_DOMAIN: "Malformed Domain", DOMAIN_DOES_NOT_EXIST: "Domain Does Not Exist"}
_FAIL_COUNTER = {MALFORMED_DOMAIN: "Fail - Malformed Domain", DOMAIN_DOES_NOT_EXIST: "Fail - Non-Existent Domain"}
MISSING_PRA = SmtpResponse(550, "5.7.1", "Missing purported responsible address")
TEMP_ERROR = SmtpResponse(450, "4.4.3", "Sender ID check is temporarily unavailable")


class SenderIdAction(str, enum.Enum):
    STAMP_STATUS = "StampStatus"
    REJECT = "Reject"
    DELETE = "Delete"


class SenderIdConfig(RecipientBypassConfig):
    """Set-SenderIdConfig."""

    spoofed_domain_action: SenderIdAction = Field(
        SenderIdAction.STAMP_STATUS, description="What to do with a Fail: StampStatus, Reject or Delete.")
    temp_error_action: SenderIdAction = Field(
        SenderIdAction.STAMP_STATUS, description="What to do with a TempError: StampStatus, Reject or Delete.")
    bypassed_sender_domains: list[str] = Field(default_factory=list, max_length=100,
                                               description="PRA domains that are never checked.")
    authentication_results: bool = Field(True, description="Also stamp Authentication-Results (beyond Exchange).")
    result_cache_seconds: float = Field(
        60, ge=0, description="How long a result is reused for the same PRA domain and IP, as Exchange caches it (0 = off).")
    result_cache_size: int = Field(10_000, ge=1, description="Most (domain, IP) results kept.")

    @field_validator("bypassed_sender_domains")
    @classmethod
    def _lower_domains(cls, values: list[str]) -> list[str]:
        return [v.strip().lower() for v in values]


class SenderIdAgent(AntispamAgent):
    name = "Sender Id Agent"
    description = "Checks the purported responsible address against the originating IP (RFC 4406/4407)."
    Config = SenderIdConfig

    def __init__(self, config: SenderIdConfig, context) -> None:
        super().__init__(config, context)
        self.checker = SpfChecker(context.dns, receiver=context.server_fqdn)
        self.internal = parse_internal_servers(context.config.internal_smtp_servers)
        self._results: OrderedDict[tuple[str, str], tuple[float, SpfResult]] = OrderedDict()

    async def _check(self, domain: str, ip: str, pra: str, helo: str) -> SpfResult:
        """check_pra, with Exchange's per-(domain, IP) cache of results."""
        cfg: SenderIdConfig = self.config
        key, now = (domain, ip), time.monotonic()
        cached = self._results.get(key)
        if cached is not None and now - cached[0] < cfg.result_cache_seconds:
            return cached[1]
        result = await self.checker.check_pra(ip, pra, helo)
        self._count("DNS Queries", len(result.queries))
        if cfg.result_cache_seconds and result.result != "temperror":
            self._results[key] = (now, result)
            self._results.move_to_end(key)
            while len(self._results) > cfg.result_cache_size:
                self._results.popitem(last=False)
        return result

    def _count(self, name: str, by: int = 1) -> None:
        self.context.counters.increment(COUNTERS, name, by)

    async def on_end_of_headers(self, event: EndOfHeadersEvent) -> None:
        cfg: SenderIdConfig = self.config
        item, session = event.mail_item, event.session
        bypassed = self.bypassed(item.recipients)
        if self.bypass(session) is not None or len(bypassed) == len(item.recipients):
            self._count("Messages That Bypassed Validation")
            return
        ip = originating_ip(session.client_ip, self.internal, item.header_values("Received"))
        if ip is None:
            self._count("Messages Missing Originating IP")
            return
        ip_text = str(ip)
        pra = find_pra((h.name, h.value) for h in item.headers)
        if pra.address is None:
            self._count("Messages with No PRA")
            self._stamp(event, "fail", ip_text, pra, None)
            if cfg.spoofed_domain_action is not SenderIdAction.STAMP_STATUS:
                self._act(event, cfg.spoofed_domain_action, MISSING_PRA, bypassed, "no purported responsible address")
            return
        domain = (pra.domain or "").lower()
        item.stamps[Stamp.PRD] = domain
        if domain in cfg.bypassed_sender_domains:
            item.set_header(ORG + "PRD", domain)
            self._count("Messages That Bypassed Validation")
            return
        result = await self._check(domain, ip_text, pra.address, session.helo)
        self._count("Messages Validated")
        kind = _FAIL_COUNTER.get(result.fail_reason or "", "Fail - Not Permitted") if result.result == "fail" \
            else EXCHANGE_STATUS[result.result]
        self._count(f"Messages Validated with a {kind} Result")
        self._stamp(event, result.result, ip_text, pra, result.fail_reason, domain)
        if result.result == "fail" and cfg.spoofed_domain_action is not SenderIdAction.STAMP_STATUS:
            text = f"Sender ID (PRA) {_FAIL_TEXT.get(result.fail_reason or '', 'Not Permitted')}"
            if result.explanation:
                text += f" - {result.explanation}"
            self._act(event, cfg.spoofed_domain_action, SmtpResponse(550, "5.7.1", text), bypassed,
                      f"Sender ID Fail for {pra.address} from {ip}")
        elif result.result == "temperror" and cfg.temp_error_action is not SenderIdAction.STAMP_STATUS:
            self._act(event, cfg.temp_error_action, TEMP_ERROR, bypassed,
                      f"Sender ID TempError for {pra.address}: {result.problem or ''}")

    def _stamp(self, event: EndOfHeadersEvent, result: str, ip: str, pra, fail_reason: str | None,
               prd: str | None = None) -> None:
        """PRD (when there is a PRA), SenderIdResult, Received-SPF and Authentication-Results, in one edit of
        the header block rather than one per field; the status is kept on the item too."""
        item = event.mail_item
        fqdn = self.context.server_fqdn
        status = EXCHANGE_STATUS[result]
        item.stamps[Stamp.SENDER_ID_RESULT] = status
        stamps = ([(ORG + "PRD", prd)] if prd is not None else []) + [(ORG + "SenderIdResult", status)]
        fields = [("Received-SPF", received_spf(result, receiver=fqdn, client_ip=ip, helo=event.session.helo,
                                                pra=pra.address, fail_reason=fail_reason))]
        if self.config.authentication_results:
            fields.append(("Authentication-Results", authentication_results(fqdn, sender_id=result, pra=pra)))
        item.edit_headers(fields_named([name for name, _ in stamps] + ["Received-SPF"]), prepend=fields, append=stamps)
        event.stamp(f"Sender ID {status} for {pra.address or 'no PRA'} from {ip}")

    def _act(self, event: EndOfHeadersEvent, action: SenderIdAction, response: SmtpResponse,
             bypassed: set[str], reason: str) -> None:
        """Reject or delete; recipients on the bypass list keep the message."""
        others = [r.address for r in event.mail_item.recipients if r.address.lower() not in bypassed]
        if action is SenderIdAction.REJECT:
            self.act_per_recipient(event, reason, response, rejected=others)
        else:
            self.act_per_recipient(event, reason, response, deleted=others)
