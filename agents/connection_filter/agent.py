"""The Connection Filtering agent (Exchange's ConnectionFilteringAgent): IP Allow/Block lists and DNS list providers.

Flow, as Exchange's code runs it (reference §3.1): at OnConnect an external client's IP is looked up in the IP Allow
and IP Block lists and the session is flagged; a blocked client is refused at MAIL FROM (Exchange's docs say after
RCPT TO; its code answers MAIL); at each RCPT (not for allow-listed clients or bypassed recipients) the allow list
providers and then the block list providers are asked, once per session, and a block hit refuses that and every
later RCPT; at end of headers a session from an internal server is judged by the originating IP instead. An allow
hit gives the message SCL -1 (IPOnAllowList), which the other agents read through the common gate. Beyond Exchange,
a block list provider with `action: StampStatus` refuses nothing: its hit is stamped on the message at end of
headers (`Stamp.DNS_LIST_HITS`) for the content filter's dns_block_list rule to weigh.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pydantic import Field

from agents import (ORGANIZATION_HEADER_PREFIX, AntispamAgent, Bypass, ConnectEvent, DisconnectEvent,
                    EndOfHeadersEvent, MailFromEvent, RcptToEvent, RecipientBypassConfig, SmtpResponse,
                    Stamp)
from agents.senderid.origin import originating_ip, parse_internal_servers
from transport.core.internal_servers import IPAddress, client_address

from .ip_list import IPListEntry, first_hit
from .providers import ListProvider, ProviderAction, ProviderResult, look_up_all

__all__ = ["ConnectionFilteringAgent", "ConnectionFilterConfig", "COUNTERS"]

COUNTERS = "MSExchange Connection Filtering Agent"
STATIC_REJECTION = "External client with IP address {0} does not have permissions to submit to this server."


class ConnectionFilterConfig(RecipientBypassConfig):
    """Set-IPAllowListConfig, Set-IPBlockListConfig, the IP list entries and the list providers."""

    ip_allow_list: list[IPListEntry] = Field(default_factory=list, description="IP Allow list entries (Add-IPAllowListEntry).")
    ip_block_list: list[IPListEntry] = Field(default_factory=list, description="IP Block list entries (Add-IPBlockListEntry).")
    static_entry_rejection_response: str = Field(
        STATIC_REJECTION, description="StaticEntryRejectionResponse (Set-IPBlockListConfig): {0} is the client IP.")
    allow_list_providers: list[ListProvider] = Field(default_factory=list, description="IP allow list providers (Add-IPAllowListProvider).")
    block_list_providers: list[ListProvider] = Field(default_factory=list, description="IP block list providers (Add-IPBlockListProvider).")


@dataclass(frozen=True, slots=True)
class _ProviderVerdict:
    allowed: bool
    blocked: ListProvider | None
    stamped: tuple[str, ...] = ()  # the StampStatus providers listing the IP, by name


class ConnectionFilteringAgent(AntispamAgent):
    name = "Connection Filtering Agent"
    description = "IP Allow/Block lists and DNS allow/block list providers."
    Config = ConnectionFilterConfig

    def __init__(self, config: ConnectionFilterConfig, context) -> None:
        super().__init__(config, context)
        self.internal = parse_internal_servers(context.config.internal_smtp_servers)
        self._sessions: dict[tuple[str, str], _ProviderVerdict] = {}  # (session id, IP) → the providers' verdict

    def _count(self, name: str) -> None:
        self.context.counters.increment(COUNTERS, name)

    def _static_rejection(self, ip: IPAddress) -> SmtpResponse:
        return SmtpResponse(550, "5.7.1", self.config.static_entry_rejection_response.replace("{0}", str(ip)))

    def _static(self, ip: IPAddress) -> tuple[IPListEntry | None, IPListEntry | None]:
        """(allow entry, block entry) listing the IP; the allow list wins, so a block entry only without one."""
        allow = first_hit(self.config.ip_allow_list, ip)
        return allow, None if allow else first_hit(self.config.ip_block_list, ip)

    async def _providers(self, ip: IPAddress) -> _ProviderVerdict:
        """Allow list providers first; then block list providers, by priority; unknown answers never block."""
        cfg: ConnectionFilterConfig = self.config
        results = await look_up_all(self.context.dns, cfg.allow_list_providers + cfg.block_list_providers, ip)
        for r in results:
            if r.listed is None:
                self.log.warning("%s did not answer for %s: %s", r.provider.name, ip, r.outcome)
        allow_names = {id(p) for p in cfg.allow_list_providers}
        if any(r.listed for r in results if id(r.provider) in allow_names):
            return _ProviderVerdict(True, None)
        hits = [r for r in results if r.listed and id(r.provider) not in allow_names]
        blocking: ProviderResult | None = next((r for r in hits if r.provider.action is ProviderAction.REJECT), None)
        stamped = tuple(r.provider.name for r in hits if r.provider.action is ProviderAction.STAMP_STATUS)
        return _ProviderVerdict(False, blocking.provider if blocking else None, stamped)

    # -- events -------------------------------------------------------------------------------------
    async def on_connect(self, event: ConnectEvent) -> None:
        s = event.session
        if s.internal or self.bypass(s) is not None:
            return
        allow, block = self._static(client_address(s.client_ip))
        if allow is not None:
            s.on_allow_list = True
            self._count("Connections on IP Allow List")
        elif block is not None:
            s.on_block_list = True
            self._count("Connections on IP Block List")

    async def on_mail_from(self, event: MailFromEvent) -> None:
        s = event.session
        if s.on_block_list and self.bypass(s) is None:
            event.reject_command(self._static_rejection(ipaddress.ip_address(s.client_ip)),
                                 f"{s.client_ip} is on the IP Block list")

    async def on_rcpt_to(self, event: RcptToEvent) -> None:
        s = event.session
        if s.internal or self.bypass(s) is not None or self.bypassed([event.recipient]):
            return
        ip = client_address(s.client_ip)
        key = (s.session_id, s.client_ip)
        verdict = self._sessions.get(key)
        if verdict is None:
            verdict = self._sessions[key] = await self._providers(ip)
            if verdict.allowed:
                self._count("Connections on IP Allow List Providers")
            elif verdict.blocked is not None:
                self._count("Connections on IP Block List Providers")
        if verdict.allowed:
            s.on_allow_list = True
        elif verdict.blocked is not None:
            event.reject_command(SmtpResponse(550, "5.7.1", verdict.blocked.rejection(ip)),
                                 f"{ip} is listed by {verdict.blocked.name}")

    async def on_end_of_headers(self, event: EndOfHeadersEvent) -> None:
        item, s = event.mail_item, event.session
        gate = self.bypass(s)
        if gate not in (None, Bypass.IP_ON_ALLOW_LIST):
            return
        if s.internal and not s.on_allow_list:
            await self._originating(event)
            if event.acted:
                return
        verdict = self._sessions.get((s.session_id, s.client_ip))
        if verdict is not None and verdict.stamped and not s.on_allow_list:
            item.stamps[Stamp.DNS_LIST_HITS] = list(verdict.stamped)
            event.stamp(f"{s.client_ip} is listed by {', '.join(verdict.stamped)} (StampStatus)")
        if s.on_allow_list:
            item.set_scl(-1, [(ORGANIZATION_HEADER_PREFIX + "Antispam-Report", Bypass.IP_ON_ALLOW_LIST.value)])
            item.stamps[Stamp.ANTISPAM_BYPASS] = Bypass.IP_ON_ALLOW_LIST.value
            event.stamp(f"{s.client_ip if not s.internal else 'the originating IP'} is on an IP allow list: SCL -1")

    async def _originating(self, event: EndOfHeadersEvent) -> None:
        """Behind an internal server: the same checks on the originating IP, rejecting the message (or the
        recipients that are not bypassed)."""
        item, s = event.mail_item, event.session
        ip = originating_ip(s.client_ip, self.internal, item.header_values("Received"))
        if ip is None:
            return
        allow, block = self._static(ip)
        response = None
        if allow is not None:
            self._count("Messages with Originating IP on IP Allow List")
        elif block is not None:
            self._count("Messages with Originating IP on IP Block List")
            response = self._static_rejection(ip)
        else:
            verdict = await self._providers(ip)
            if verdict.allowed:
                self._count("Messages with Originating IP on IP Allow List Providers")
            elif verdict.blocked is not None:
                self._count("Messages with Originating IP on IP Block List Providers")
                response = SmtpResponse(550, "5.7.1", verdict.blocked.rejection(ip))
            else:
                if verdict.stamped:
                    item.stamps[Stamp.DNS_LIST_HITS] = list(verdict.stamped)
                return
        if response is None:
            s.on_allow_list = True
            return
        kept = self.bypassed(item.recipients)
        self.act_per_recipient(event, f"originating IP {ip} is on a block list", response,
                               rejected=[r.address for r in item.recipients if r.address.lower() not in kept])

    async def on_disconnect(self, event: DisconnectEvent) -> None:
        for key in [k for k in self._sessions if k[0] == event.session.session_id]:
            del self._sessions[key]
