"""A throw-away DNS server on 127.0.0.1 for tests that must exercise the real network path.

It answers UDP queries from a dict, so a test sees exactly what dnspython does with a real NXDOMAIN, NODATA, SERVFAIL,
REFUSED or a server that never answers (a timeout). Use it as an async context manager::

    async with LocalDnsServer({"example.com": {"A": ["192.0.2.1"], "TXT": ['"v=spf1 -all"']}},
                              failures={"broken.example": "servfail", "slow.example": "timeout"}) as server:
        resolver = DnsResolver(server.settings(timeout=0.5))

Record values are master-file rdata text. A name with a ``CNAME`` entry is answered with the chain, as a recursive
server would. A name in ``failures`` fails every query its records do not answer. Every query received is appended to ``queries`` as ``(name, type)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from transport.core.dns import DnsSettings

_FAILURES = {"servfail": dns.rcode.SERVFAIL, "refused": dns.rcode.REFUSED}


def _key(name: str | dns.name.Name) -> str:
    if isinstance(name, dns.name.Name):  # its labels as sent, not the escaped text (a space is a space)
        name = ".".join(label.decode("latin-1") for label in name.labels)
    return name.rstrip(".").lower()


def _name(key: str) -> dns.name.Name:
    return dns.name.Name([label.encode("latin-1") for label in key.split(".")] + [b""])


class LocalDnsServer(asyncio.DatagramProtocol):
    def __init__(
        self,
        records: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
        *,
        failures: Mapping[str, str] | None = None,
        ttl: int = 300,
        negative_ttl: int = 60,
    ) -> None:
        self.records = {_key(name): dict(types) for name, types in (records or {}).items()}
        self.failures = {_key(name): how for name, how in (failures or {}).items()}
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.queries: list[tuple[str, str]] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def __aenter__(self) -> LocalDnsServer:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, 0))
        self.port = transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._transport is not None:
            self._transport.close()

    def settings(self, **overrides: Any) -> DnsSettings:
        """DnsSettings pointing at this server only."""
        return DnsSettings(nameservers=[self.host], port=self.port, **overrides)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        qname, qtype = _key(question.name), dns.rdatatype.to_text(question.rdtype)
        self.queries.append((qname, qtype))
        failure = self.failures.get(qname)
        if failure is not None and qtype in self.records.get(qname, {}):
            failure = None  # a failing name still answers the types it has
        if failure == "timeout":
            return  # stay silent: the client's lifetime runs out
        response = dns.message.make_response(query)
        if failure is not None:
            response.set_rcode(_FAILURES[failure])
        else:
            self._answer(response, qname, qtype)
        assert self._transport is not None
        self._transport.sendto(response.to_wire(), addr)

    def _answer(self, response: dns.message.Message, name: str, qtype: str) -> None:
        for _ in range(8):
            types = self.records.get(name)
            if types is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
                break
            if qtype in types:
                response.answer.append(self._rrset(name, qtype, types[qtype]))
                return
            if "CNAME" not in types:
                break
            target = types["CNAME"][0]
            response.answer.append(self._rrset(name, "CNAME", [target]))
            name = _key(target)
        soa = f". . 1 3600 600 86400 {self.negative_ttl}"
        response.authority.append(dns.rrset.from_text(".", self.negative_ttl, "IN", "SOA", soa))

    def _rrset(self, name: str, rdtype: str, texts: Sequence[str]) -> dns.rrset.RRset:
        # Names inside rdata (MX, CNAME, PTR targets) are read as absolute, trailing dot or not.
        return dns.rrset.from_text_list(_name(name), self.ttl, "IN", rdtype, texts,
                                        origin=dns.name.root, relativize=False)
