"""The DNS layer every agent shares: one ``lookup(name, rdtype)`` call with plain, immutable answers.

Agents (Sender ID, connection filtering, reverse DNS) must tell NXDOMAIN from NODATA from a temporary failure,
because SPF, Sender ID and DNSBL rules give each a different meaning. dnspython reports those three outcomes through
different exception types and answer shapes; this module folds them into one :class:`DnsAnswer` (NOERROR, NXDOMAIN,
NODATA) or one :class:`DnsTempError`, so callers never import dnspython.

:class:`DnsResolver` answers, in this order:

1. from **zone files** (BIND master format, loaded at construction): a zone is authoritative for every name at or
   under its origin, so a name it does not hold is NXDOMAIN and no query leaves the machine; a file whose
   ``$ORIGIN`` is ``.`` covers every name, which lets one demo file describe several domains; each answer is
   made once per name and type as asked (up to ``cache_size`` of them), the files not changing while the hub runs;
2. from its **cache** (TTL-respecting; negative answers kept for the SOA minimum, or :data:`NEGATIVE_TTL` seconds when
   the server sent no SOA; temporary errors never cached);
3. from the **network** (``dns.asyncresolver``), when :attr:`DnsSettings.use_network` is true.

Code that only needs *some* resolver (the SPF engine, tests with an in-memory fake) depends on the :class:`Resolver`
protocol, not on this class.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rdata
import dns.rdatatype
import dns.resolver
import dns.zone
from pydantic import BaseModel, ConfigDict, Field

from .errors import TransportError

__all__ = [
    "DnsAnswer",
    "DnsError",
    "DnsNameError",
    "DnsQuery",
    "DnsResolver",
    "DnsSettings",
    "DnsTempError",
    "Resolver",
    "record_text",
]

#: Seconds a negative answer is cached when the server's response carries no SOA record.
NEGATIVE_TTL = 60
#: Longest CNAME chain followed inside the zone overlay; a longer chain or a loop answers NXDOMAIN.
MAX_CNAME_CHAIN = 8

Rcode = Literal["NOERROR", "NXDOMAIN", "NODATA"]
_Record = str | tuple[bytes, ...] | tuple[int, str]


class DnsSettings(BaseModel):
    """Where the hub's DNS answers come from (the ``dns:`` section of the configuration)."""

    model_config = ConfigDict(extra="forbid")

    nameservers: list[str] = Field(
        default_factory=list,
        description="IP addresses of the DNS servers to ask; empty means the system's resolv.conf.")
    port: int = Field(53, ge=1, le=65535, description="UDP/TCP port of the DNS servers.")
    timeout: float = Field(2.0, gt=0, description="Seconds one whole lookup may take before it is a TempError.")
    cache: bool = Field(True, description="Cache answers for their TTL (negative answers for the SOA minimum).")
    cache_size: int = Field(10_000, ge=1, description="Most answers kept in the cache; the oldest go first.")
    zone_files: list[Path] = Field(
        default_factory=list,
        description="BIND master-format zone files answered locally and authoritatively ($ORIGIN . covers all names).")
    use_network: bool = Field(
        True, description="Ask DNS servers for names no zone file covers; false makes such lookups a TempError.")


class DnsError(TransportError):
    """Root of every error this module raises."""


class DnsNameError(DnsError, ValueError):
    """The name cannot be put in a DNS query (empty or over-long label, name over 255 octets, non-ASCII)."""


class DnsTempError(DnsError):
    """The lookup could not be completed now; a retry may succeed (SPF's and Sender ID's TempError).

    ``reason`` is a short machine-readable cause: ``timeout``, ``servfail``, ``refused``, ``no DNS servers``, ...
    """

    def __init__(self, name: str, rdtype: str, reason: str) -> None:
        super().__init__(f"{rdtype} lookup of {name} failed: {reason}")
        self.name = name
        self.rdtype = rdtype
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """The outcome of one lookup that the DNS answered (authoritatively or from cache).

    ``records`` holds plain values: A/AAAA address text; TXT one ``tuple[bytes, ...]`` per RR (character-strings
    kept apart); MX ``(preference, exchange)``; PTR/CNAME/NS the target; names without the trailing dot.
    CNAMEs are already followed: ``records`` belong to the end of the chain and ``ttl`` is the chain's minimum.
    """

    name: str
    rdtype: str
    rcode: Rcode
    records: tuple[_Record, ...]
    ttl: int


@dataclass(frozen=True, slots=True)
class DnsQuery:
    """One lookup made on a caller's behalf, kept so the caller can count and show the queries it caused."""

    name: str
    rdtype: str
    answer: DnsAnswer | None
    error: DnsError | None = None

    @property
    def outcome(self) -> str:
        """``NOERROR (2)``, ``NXDOMAIN``, ``NODATA``, or ``TEMPERROR (timeout)``."""
        if self.answer is None:
            reason = self.error.reason if isinstance(self.error, DnsTempError) else str(self.error)
            return f"TEMPERROR ({reason})"
        if self.answer.rcode == "NOERROR":
            return f"NOERROR ({len(self.answer.records)})"
        return self.answer.rcode


def record_text(record: _Record) -> str:
    """A record as a person reads it: a TXT record's strings joined, an MX as `10 mx.example`, others as they are."""
    if isinstance(record, tuple) and record and isinstance(record[0], bytes):
        return "".join(part.decode("utf-8", "replace") for part in record)  # type: ignore[union-attr]
    if isinstance(record, tuple):
        return " ".join(str(part) for part in record)
    return str(record)


class Resolver(Protocol):
    """What DNS consumers depend on: :class:`DnsResolver` in production, an in-memory fake in tests."""

    async def lookup(self, name: str, rdtype: str) -> DnsAnswer:
        """Answer ``rdtype`` for ``name``; raise :class:`DnsTempError` when no answer can be had now."""
        ...


def _query_name(name: str) -> dns.name.Name:
    if not name.isascii():
        raise DnsNameError(f"{name!r}: not an ASCII DNS name (IDNA-encode it first)")
    try:
        return dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        raise DnsNameError(f"{name!r}: {exc}") from exc


def _target(name: dns.name.Name) -> str:
    return "" if name == dns.name.root else name.to_text(omit_final_dot=True)


def _record(rdata: dns.rdata.Rdata) -> _Record:
    """Turn one rdata into the plain value :class:`DnsAnswer` promises for its type."""
    rdtype = rdata.rdtype
    if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        return rdata.address  # type: ignore[attr-defined,no-any-return]
    if rdtype == dns.rdatatype.TXT:
        return tuple(rdata.strings)  # type: ignore[attr-defined]
    if rdtype == dns.rdatatype.MX:
        return (rdata.preference, _target(rdata.exchange))  # type: ignore[attr-defined]
    if rdtype in (dns.rdatatype.PTR, dns.rdatatype.CNAME, dns.rdatatype.NS):
        return _target(rdata.target)  # type: ignore[attr-defined]
    return rdata.to_text()


def _negative_ttl(response: dns.message.Message | None) -> int:
    """RFC 2308: a negative answer lives for min(SOA TTL, SOA MINIMUM) of the SOA in the authority section."""
    for rrset in response.authority if response is not None else ():
        if rrset.rdtype == dns.rdatatype.SOA:
            return min(rrset.ttl, rrset[0].minimum)  # type: ignore[attr-defined,no-any-return]
    return NEGATIVE_TTL


@dataclass(slots=True)
class _Zone:
    """One loaded zone file, flattened to name → type → (records, ttl) for O(1) answers."""

    origin: dns.name.Name
    nodes: dict[dns.name.Name, dict[str, tuple[tuple[_Record, ...], int]]]
    existing: set[dns.name.Name]  # owner names plus their ancestors (empty non-terminals answer NODATA)
    negative_ttl: int

    @classmethod
    def load(cls, path: Path) -> _Zone:
        try:
            zone = dns.zone.from_file(str(path), relativize=False, check_origin=False)
        except (OSError, dns.exception.DNSException, KeyError) as exc:
            raise DnsError(f"zone file {path}: {exc}") from exc
        origin = zone.origin
        if origin is None:  # from_file raises when the file names no $ORIGIN, but an empty zone has none either
            raise DnsError(f"zone file {path}: no records")
        nodes: dict[dns.name.Name, dict[str, tuple[tuple[_Record, ...], int]]] = {}
        existing: set[dns.name.Name] = set()
        negative_ttl = NEGATIVE_TTL
        for owner, node in zone.nodes.items():
            types = nodes.setdefault(owner, {})
            for rdataset in node.rdatasets:
                rdtype = dns.rdatatype.to_text(rdataset.rdtype)
                types[rdtype] = (tuple(_record(rd) for rd in rdataset), rdataset.ttl)
                if rdataset.rdtype == dns.rdatatype.SOA and owner == origin:
                    negative_ttl = min(rdataset.ttl, rdataset[0].minimum)  # type: ignore[attr-defined]
            name = owner
            while name not in existing and name != origin and name != dns.name.root:
                existing.add(name)
                name = name.parent()
            existing.add(origin)
        return cls(origin, nodes, existing, negative_ttl)


class DnsResolver:
    """Answers lookups from zone files, then the cache, then DNS servers (see the module docstring).

    Build it from the configuration with ``DnsResolver(settings)``; relative zone file paths must already be
    resolved. ``queries`` counts every lookup asked of it; ``network_queries`` the ones sent to a server.
    Per-caller accounting is the caller's: the SPF engine records a :class:`DnsQuery` for each lookup it makes.
    """

    def __init__(self, settings: DnsSettings | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings = settings or DnsSettings()
        self._clock = clock  # injectable so tests can age the cache without sleeping
        self.queries = 0
        self.network_queries = 0
        zones = [_Zone.load(Path(path)) for path in settings.zone_files]
        # Most specific origin first, so a contoso.com file overrides a catch-all "$ORIGIN ." file.
        self._zones = sorted(zones, key=lambda z: len(z.origin), reverse=True)
        self._cache: dict[tuple[dns.name.Name, str], tuple[float, DnsAnswer]] = {}
        self._zone_answers: dict[tuple[str, str], DnsAnswer] = {}  # (name, type) as asked → the zones' answer
        self._network = self._make_network_resolver(settings) if settings.use_network else None

    @staticmethod
    def _make_network_resolver(settings: DnsSettings) -> dns.asyncresolver.Resolver | None:
        if settings.nameservers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = list(settings.nameservers)
        else:
            try:
                resolver = dns.asyncresolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                return None  # every network lookup becomes TempError "no DNS servers", as in Exchange
        resolver.port = settings.port
        resolver.timeout = settings.timeout
        resolver.lifetime = settings.timeout
        resolver.cache = None  # answers are cached by this class, with negative TTLs it controls
        return resolver

    async def lookup(self, name: str, rdtype: str) -> DnsAnswer:
        """Answer ``rdtype`` (``"A"``, ``"TXT"``, ...) for ``name`` (case-insensitive, trailing dot optional).

        Raises :class:`DnsTempError` for a timeout, SERVFAIL, REFUSED or when no DNS server is available, and
        :class:`DnsNameError` for a name that cannot be queried.
        """
        self.queries += 1
        asked = (name, rdtype)
        known = self._zone_answers.get(asked)
        if known is not None:  # zone files do not change while the hub runs: the answer is made once
            return known
        rdtype = rdtype.upper()
        shown = name.rstrip(".").lower()
        qname = _query_name(name)
        hit = self._from_zones(qname, rdtype)
        if isinstance(hit, DnsAnswer):
            answer = DnsAnswer(shown, rdtype, hit.rcode, hit.records, hit.ttl)
            if len(self._zone_answers) < self.settings.cache_size:
                self._zone_answers[asked] = answer
            return answer
        if hit is None:
            return await self._from_network(shown, qname, rdtype)
        target, chain_ttl = hit  # a zone's CNAME points outside every zone
        answer = await self._from_network(shown, target, rdtype)
        return DnsAnswer(shown, rdtype, answer.rcode, answer.records, min(answer.ttl, chain_ttl))

    def _zone_for(self, qname: dns.name.Name) -> _Zone | None:
        for zone in self._zones:
            if qname.is_subdomain(zone.origin):
                return zone
        return None

    def _from_zones(
        self, qname: dns.name.Name, rdtype: str
    ) -> DnsAnswer | tuple[dns.name.Name, int] | None:
        """The overlay's answer; ``None`` when no zone covers ``qname``; ``(target, ttl)`` for a CNAME leaving it.

        CNAMEs are followed across zones. A loop, or a chain longer than :data:`MAX_CNAME_CHAIN`, answers NXDOMAIN:
        the name leads nowhere, which is how SPF wants a CNAME loop treated ("no such host").
        """
        name, ttl = qname, 2**31 - 1
        for _ in range(MAX_CNAME_CHAIN + 1):
            zone = self._zone_for(name)
            if zone is None:
                return None if name is qname else (name, ttl)
            types = zone.nodes.get(name)
            if types is None:
                rcode: Rcode = "NODATA" if name in zone.existing else "NXDOMAIN"
                return DnsAnswer("", rdtype, rcode, (), min(ttl, zone.negative_ttl))
            if rdtype in types:
                records, rr_ttl = types[rdtype]
                return DnsAnswer("", rdtype, "NOERROR", records, min(ttl, rr_ttl))
            if "CNAME" not in types:
                return DnsAnswer("", rdtype, "NODATA", (), min(ttl, zone.negative_ttl))
            (target,), cname_ttl = types["CNAME"]
            name, ttl = dns.name.from_text(str(target)), min(ttl, cname_ttl)
        return DnsAnswer("", rdtype, "NXDOMAIN", (), 0)

    async def _from_network(self, shown: str, qname: dns.name.Name, rdtype: str) -> DnsAnswer:
        key = (qname, rdtype)
        if self.settings.cache:
            cached = self._cache.get(key)
            if cached is not None:
                if cached[0] > self._clock():
                    return cached[1]
                del self._cache[key]
        if self._network is None:
            raise DnsTempError(shown, rdtype, "no DNS servers")
        self.network_queries += 1
        answer = await self._resolve(shown, qname, rdtype)
        if self.settings.cache and answer.ttl > 0:
            self._remember(key, answer)
        return answer

    async def _resolve(self, shown: str, qname: dns.name.Name, rdtype: str) -> DnsAnswer:
        assert self._network is not None
        try:
            result = await self._network.resolve(qname, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as exc:
            response = next(iter(exc.responses().values()), None)
            return DnsAnswer(shown, rdtype, "NXDOMAIN", (), _negative_ttl(response))
        except dns.exception.Timeout as exc:
            raise DnsTempError(shown, rdtype, "timeout") from exc
        except dns.resolver.NoNameservers as exc:
            raise DnsTempError(shown, rdtype, self._failure_reason(exc)) from exc
        except dns.exception.DNSException as exc:
            raise DnsTempError(shown, rdtype, f"error: {exc}") from exc
        chain = result.chaining_result
        if chain.answer is None:
            return DnsAnswer(shown, rdtype, "NODATA", (), chain.minimum_ttl)
        return DnsAnswer(shown, rdtype, "NOERROR", tuple(_record(rd) for rd in chain.answer), chain.minimum_ttl)

    @staticmethod
    def _failure_reason(exc: dns.resolver.NoNameservers) -> str:
        """``servfail``/``refused``/... from the servers' rcodes, so SERVFAIL is never mistaken for NXDOMAIN."""
        reasons = []
        for error in exc.kwargs.get("errors", ()):
            detail = error[3]
            reason = detail.lower() if isinstance(detail, str) else f"error: {detail}"
            if reason not in reasons:
                reasons.append(reason)
        return ", ".join(reasons) or "no DNS servers"

    def _remember(self, key: tuple[dns.name.Name, str], answer: DnsAnswer) -> None:
        now = self._clock()
        if len(self._cache) >= self.settings.cache_size:
            for stale in [k for k, (expires, _) in self._cache.items() if expires <= now]:
                del self._cache[stale]
            while len(self._cache) >= self.settings.cache_size:
                del self._cache[next(iter(self._cache))]  # dicts keep insertion order: oldest first
        self._cache[key] = (now + answer.ttl, answer)
