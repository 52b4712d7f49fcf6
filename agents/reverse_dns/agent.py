"""Reverse DNS of the HELO name: Exchange 2003's "Perform reverse DNS lookup on incoming messages".

At HELO/EHLO the client IP's PTR names are looked up and forward-confirmed (a PTR name whose A/AAAA records hold
the IP); the result is Verified when a confirmed name is the HELO/EHLO domain, Unverified otherwise, and RDNS failed
when there is no PTR record or the lookup fails. It never rejects: the submission path writes `unverified` or
`RDNS failed` after the IP in the Received header, and end of headers records the result in
`item.stamps[Stamp.REVERSE_DNS]` for the content filter to weigh. A host name given by XCLIENT NAME stands in
for the PTR lookup (Postfix's `[UNAVAILABLE]`/`[TEMPUNAVAIL]` count as a failed lookup).
"""

from __future__ import annotations

import functools
import ipaddress

from pydantic import Field

from agents import (AntispamAgent, AntispamConfig, EhloEvent, EndOfHeadersEvent, HeloEvent, ReverseDns, SessionInfo,
                    Stamp)
from transport.core.dns import DnsError
from transport.core.internal_servers import IPAddress

__all__ = ["ReverseDnsAgent", "ReverseDnsConfig", "COUNTERS", "check_helo"]

COUNTERS = "MSExchange Reverse DNS Agent"
_UNAVAILABLE = ("[UNAVAILABLE]", "[TEMPUNAVAIL]")


class ReverseDnsConfig(AntispamConfig):
    """How many PTR names are tried (a client with dozens of PTR records should not cost dozens of lookups)."""

    max_ptr_names: int = Field(10, ge=1, description="Most PTR names forward-confirmed per client.")


@functools.lru_cache(maxsize=4096)
def _client(text: str) -> tuple[IPAddress, str]:
    """A client IP as an address and its PTR query name, remembered: the same clients connect again and again."""
    ip = ipaddress.ip_address(text)
    return ip, ip.reverse_pointer


async def check_helo(resolver, session: SessionInfo, helo: str, max_names: int = 10) -> ReverseDns:
    """Whether the client's forward-confirmed reverse DNS names `helo`."""
    ip, reverse_pointer = _client(session.client_ip)
    if session.client_hostname:
        if session.client_hostname in _UNAVAILABLE:
            return ReverseDns.FAILED
        names: tuple[str, ...] = (session.client_hostname.rstrip(".").lower(),)
    else:
        try:
            answer = await resolver.lookup(reverse_pointer, "PTR")
        except DnsError:
            return ReverseDns.FAILED
        names = tuple(str(n).lower() for n in answer.records)
        if not names:
            return ReverseDns.FAILED
    rdtype = "A" if ip.version == 4 else "AAAA"
    helo = helo.rstrip(".").lower()
    for name in names[:max_names]:
        if name != helo:
            continue
        try:
            forward = await resolver.lookup(name, rdtype)
        except DnsError:
            continue
        if any(ipaddress.ip_address(str(a)) == ip for a in forward.records):
            return ReverseDns.VERIFIED
    return ReverseDns.UNVERIFIED


class ReverseDnsAgent(AntispamAgent):
    name = "Reverse DNS Agent"
    description = "Looks up the client's PTR name, forward-confirmed, and compares it with the HELO domain."
    Config = ReverseDnsConfig
    honours_allow_list = False

    async def on_helo(self, event: HeloEvent) -> None:
        s = event.session
        if self.bypass(s) is not None:
            return
        result = await check_helo(self.context.dns, s, event.domain, self.config.max_ptr_names)
        s.reverse_dns = result.value
        self.context.counters.increment(COUNTERS, f"Reverse DNS Lookups {result.name.title()}")

    async def on_ehlo(self, event: EhloEvent) -> None:
        await self.on_helo(event)

    async def on_end_of_headers(self, event: EndOfHeadersEvent) -> None:
        if event.session.reverse_dns:
            event.mail_item.stamps[Stamp.REVERSE_DNS] = event.session.reverse_dns
