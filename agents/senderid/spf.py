"""RFC 7208 ``check_host()`` with the Sender ID scopes of RFC 4406, over any :class:`transport.core.dns.Resolver`.

Use one :class:`SpfChecker` per configuration (resolver, receiver name, default explanation, limits) and call
:meth:`SpfChecker.check_host` — or the identity helpers :meth:`~SpfChecker.check_mail_from`,
:meth:`~SpfChecker.check_helo` and :meth:`~SpfChecker.check_pra` — once per message. Every call returns an immutable
:class:`SpfResult` that also lists the DNS queries it made, so callers can count and show them.

Choices where the RFCs leave room (all covered by tests):

* **Limits are counted while evaluating**, never statically: ``include``, ``a``, ``mx``, ``ptr``, ``exists`` and
  ``redirect`` each count one DNS term (at most ``max_dns_terms``, default 10); terms after the deciding match are
  never counted. The initial record lookup, ``exp``, ``%{p}``, and the address lookups of MX and PTR hosts do not.
* **Void lookups are counted per term** (the RFC's wording: terms whose query answers NXDOMAIN or NODATA): only a
  mechanism's own query (the A/AAAA of ``a``, the MX of ``mx``, the PTR of ``ptr``, the A of ``exists``) can be void,
  so an ``mx`` whose hosts lack AAAA records does not exhaust the limit for an IPv6 client. A domain-spec that expands
  to no usable DNS name is treated as a void answer. More than ``max_void_lookups`` (default 2) → PermError.
* More than 10 MX records → PermError (RFC 7208 changed this from RFC 4408); only the first 10 PTR names are
  considered, never an error. A DNS error on the PTR lookup, or on the forward lookup of one PTR name, only makes that
  lookup not match; a DNS error anywhere else → TempError.
* The ``exp=`` of the record that produced the Fail is consulted once, after the result is known; any problem with
  it (DNS error, not exactly one TXT RR, bad macro, non-ASCII) silently falls back to the default explanation.
* The whole evaluation is bounded by ``timeout`` (default 20 s, RFC 7208 §4.6.4): a query due after the deadline
  makes the result TempError (checked before each query rather than with a cancelling timer, which costs more than
  the whole evaluation; a single query is bounded by the resolver's own timeout).
* Sender ID (scope ``pra``): a malformed PRA domain → Fail/MalformedDomain and an NXDOMAIN for it →
  Fail/DomainDoesNotExist (RFC 4406 §4.3, as Exchange reports them). Both apply to the PRA domain itself; an
  ``include:``/``redirect=`` target that does not exist is a PermError as in SPF. Scope ``mfrom`` keeps SPF's None
  for both. Record selection per scope is described in :mod:`agents.senderid.records`.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass

from transport.core.dns import DnsAnswer, DnsNameError, DnsQuery, DnsTempError, Resolver
from transport.core.internal_servers import normalise

from .macros import EXPLANATION_LETTERS, Macro, MacroString, MacroSyntaxError, expand, parse_macro_string
from .records import DomainSpec, Mechanism, PermanentError, Record, Scope, dns_name, select_record

__all__ = [
    "ClientIP",
    "DEFAULT_EXPLANATION",
    "DOMAIN_DOES_NOT_EXIST",
    "MALFORMED_DOMAIN",
    "NOT_PERMITTED",
    "SpfChecker",
    "SpfResult",
]

#: Used when a Fail has no usable ``exp=``; may hold explanation macros (``%{c}``, ``%{r}``, ...).
DEFAULT_EXPLANATION = "%{d} does not designate %{c} as a permitted sender"

#: Why a Sender ID result is Fail (Exchange's Fail sub-statuses).
NOT_PERMITTED = "NotPermitted"
MALFORMED_DOMAIN = "MalformedDomain"
DOMAIN_DOES_NOT_EXIST = "DomainDoesNotExist"

#: The SMTP client: address text (IPv4, IPv6, IPv4-mapped IPv6) or an ipaddress object.
ClientIP = str | ipaddress.IPv4Address | ipaddress.IPv6Address

_MAX_MX_RECORDS = 10
_MAX_PTR_NAMES = 10


@dataclass(frozen=True, slots=True)
class SpfResult:
    """The outcome of one check_host() call.

    ``result`` is one of pass, fail, softfail, neutral, none, temperror, permerror. ``record`` is the policy found at
    ``domain`` and ``mechanism`` the term of it that decided (``redirect=<target>`` when the redirect did, ``default``
    when nothing matched). ``explanation`` is set for fail only; ``fail_reason`` says why it failed
    (:data:`NOT_PERMITTED`, :data:`MALFORMED_DOMAIN`, :data:`DOMAIN_DOES_NOT_EXIST`); ``problem`` says why the result is
    none, temperror or permerror. ``queries`` lists every DNS lookup made, in order.
    """

    result: str
    domain: str
    scope: Scope = "spf"
    record: str | None = None
    mechanism: str | None = None
    explanation: str | None = None
    fail_reason: str | None = None
    problem: str | None = None
    queries: tuple[DnsQuery, ...] = ()


class _TooLong(Exception):
    """The evaluation passed its deadline (RFC 7208 §4.6.4): TempError."""


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What evaluating one record decided, and which record's ``exp=`` (at which ``%{d}``) explains a Fail."""

    result: str
    term: str
    explanation: DomainSpec | None
    domain: str


class SpfChecker:
    """check_host() with one configuration. Safe to share: every call keeps its state in its own evaluation."""

    def __init__(
        self,
        resolver: Resolver,
        *,
        receiver: str = "unknown",
        default_explanation: str = DEFAULT_EXPLANATION,
        max_dns_terms: int = 10,
        max_void_lookups: int = 2,
        timeout: float | None = 20.0,
    ) -> None:
        self.resolver = resolver
        self.receiver = receiver
        self.max_dns_terms = max_dns_terms
        self.max_void_lookups = max_void_lookups
        self.timeout = timeout
        try:
            self.default_explanation: MacroString = parse_macro_string(default_explanation, EXPLANATION_LETTERS)[0]
        except MacroSyntaxError:
            self.default_explanation = (default_explanation,)

    async def check_host(
        self, ip: ClientIP, domain: str, sender: str, *, helo: str = "", scope: Scope = "spf",
    ) -> SpfResult:
        """RFC 7208 §4: the policy of ``domain`` for client ``ip``; ``sender`` feeds the ``%{s,l,o}`` macros."""
        return await _Evaluation(self, ip, sender, helo, scope).run(domain)

    async def check_mail_from(self, ip: ClientIP, mail_from: str, helo: str) -> SpfResult:
        """The MAIL FROM identity (RFC 7208 §2.4); a null reverse-path checks the HELO identity instead."""
        mail_from = mail_from.strip("<>")
        if not mail_from:
            return await self.check_helo(ip, helo)
        return await self.check_host(ip, mail_from.rpartition("@")[2], mail_from, helo=helo)

    async def check_helo(self, ip: ClientIP, helo: str) -> SpfResult:
        """The HELO identity (RFC 7208 §2.3): ``postmaster@<helo>`` against the HELO name's policy."""
        return await self.check_host(ip, helo, "postmaster@" + helo, helo=helo)

    async def check_pra(self, ip: ClientIP, pra: str, helo: str = "") -> SpfResult:
        """Sender ID (RFC 4406) for a purported responsible address, with the ``pra`` scope's rules.

        ``pra`` may also be a bare domain (as ``Test-SenderId -PurportedResponsibleDomain`` takes); the local part
        for the macros is then ``postmaster``.
        """
        return await self.check_host(ip, pra.rpartition("@")[2], pra, helo=helo, scope="pra")


def _client(ip: ClientIP) -> tuple[bool, int, str]:
    """(is IPv6, value, canonical text); IPv4-mapped IPv6 clients are IPv4 for every purpose (RFC 7208 §5)."""
    if isinstance(ip, str):
        try:
            return False, int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big"), ip
        except OSError:
            pass
    address = normalise(ipaddress.ip_address(ip))
    return address.version == 6, int(address), str(address)


def _is_malformed(domain: str) -> bool:
    """RFC 7208 §4.3: a checked identity must be a multi-label domain name, not an address literal or a bad label."""
    labels = domain.split(".")
    if (len(labels) < 2 or len(domain) > 253 or not domain.isascii() or not domain.isprintable() or " " in domain
            or domain[0] == "[" or labels[-1].isdigit()):
        return True
    return any(not label or len(label) > 63 for label in labels)


class _Evaluation:
    """The state of one check_host() call: counters, the query log, the deadline and the macro values."""

    def __init__(self, checker: SpfChecker, ip: ClientIP, sender: str, helo: str, scope: Scope) -> None:
        self.v6, self.ip, self.ip_text = _client(ip)
        self.checker = checker
        self.resolver = checker.resolver
        self.scope = scope
        self.sender = sender
        self.helo = helo
        self.terms = 0
        self.voids = 0
        self.queries: list[DnsQuery] = []
        self.deadline = None if checker.timeout is None else time.monotonic() + checker.timeout
        self._values: dict[str, str] | None = None

    @property
    def values(self) -> dict[str, str]:
        """Macro values, built on first use: most records hold no macro at all."""
        if self._values is None:
            local, _, sender_domain = self.sender.rpartition("@")
            local = local or "postmaster"
            self._values = {
                "s": f"{local}@{sender_domain}",
                "l": local,
                "o": sender_domain,
                "i": ".".join(f"{self.ip:032x}") if self.v6 else self.ip_text,
                "v": "ip6" if self.v6 else "in-addr",
                "h": self.helo or "unknown",
                "c": self.ip_text,
                "r": self.checker.receiver,
            }
        return self._values

    @property
    def reverse_name(self) -> str:
        if self.v6:
            return ".".join(reversed(f"{self.ip:032x}")) + ".ip6.arpa"
        return ".".join(reversed(self.ip_text.split("."))) + ".in-addr.arpa"

    async def run(self, domain: str) -> SpfResult:
        if domain.endswith("."):
            domain = domain[:-1]
        if _is_malformed(domain):
            if self.scope == "pra":
                return self.result("fail", domain, fail_reason=MALFORMED_DOMAIN, problem="malformed domain")
            return self.result("none", domain, problem=f"{domain!r} is not a valid domain name")
        record: Record | None = None
        try:
            answer = await self.lookup(domain, "TXT")
            if answer.rcode == "NXDOMAIN" and self.scope == "pra":
                return self.result("fail", domain, fail_reason=DOMAIN_DOES_NOT_EXIST, problem="domain does not exist")
            record = select_record(answer.records, self.scope)
            if record is None:
                problem = "domain does not exist" if answer.rcode == "NXDOMAIN" else "no SPF record"
                return self.result("none", domain, problem=problem)
            outcome = await self.evaluate(record, domain)
            if outcome.result != "fail":
                return self.result(outcome.result, domain, record, outcome.term)
            explanation = await self.explain(outcome)
            return self.result("fail", domain, record, outcome.term, explanation, NOT_PERMITTED)
        except PermanentError as exc:
            return self.result("permerror", domain, record, problem=str(exc))
        except DnsTempError as exc:
            return self.result("temperror", domain, record, problem=f"DNS {exc.reason} on {exc.rdtype} {exc.name}")
        except _TooLong:
            return self.result("temperror", domain, record, problem="the SPF evaluation took too long")

    def result(
        self, result: str, domain: str, record: Record | None = None, mechanism: str | None = None,
        explanation: str | None = None, fail_reason: str | None = None, problem: str | None = None,
    ) -> SpfResult:
        return SpfResult(result, domain, self.scope, record.text if record else None, mechanism, explanation,
                         fail_reason, problem, tuple(self.queries))

    # -- DNS -------------------------------------------------------------------------------------------------------

    async def lookup(self, name: str, rdtype: str) -> DnsAnswer:
        """One logged lookup. Temporary errors propagate; an unqueryable name answers NXDOMAIN.

        The evaluation's deadline is checked before each query; each query is bounded by the resolver's own timeout.
        """
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise _TooLong
        try:
            answer = await self.resolver.lookup(name, rdtype)
        except DnsTempError as exc:
            self.queries.append(DnsQuery(name, rdtype, None, exc))
            raise
        except DnsNameError as exc:
            answer = DnsAnswer(name, rdtype, "NXDOMAIN", (), 0)
            self.queries.append(DnsQuery(name, rdtype, answer, exc))
            return answer
        self.queries.append(DnsQuery(name, rdtype, answer))
        return answer

    async def term_lookup(self, name: str | None, rdtype: str) -> tuple:
        """A mechanism's own query: an empty answer (or no usable name) is one void lookup."""
        if name is not None:
            records = (await self.lookup(name, rdtype)).records
            if records:
                return records
        self.voids += 1
        if self.voids > self.checker.max_void_lookups:
            raise PermanentError(f"more than {self.checker.max_void_lookups} void DNS lookups")
        return ()

    def count_term(self) -> None:
        self.terms += 1
        if self.terms > self.checker.max_dns_terms:
            raise PermanentError(f"more than {self.checker.max_dns_terms} DNS-querying terms")

    async def reverse_names(self, for_mechanism: bool) -> list[str]:
        """The client IP's first 10 PTR names, lower case; a DNS error gives none.

        For the ``ptr`` mechanism the query is the term's own (a void answer counts); for ``%{p}`` it is not.
        """
        try:
            if for_mechanism:
                records = await self.term_lookup(self.reverse_name, "PTR")
            else:
                records = (await self.lookup(self.reverse_name, "PTR")).records
        except DnsTempError:
            return []
        return [str(name).lower() for name in records[:_MAX_PTR_NAMES]]

    async def points_back(self, name: str) -> bool:
        """Forward-confirm a PTR name: does it resolve to the client IP? A DNS error means no."""
        try:
            records = (await self.lookup(name, "AAAA" if self.v6 else "A")).records
        except DnsTempError:
            return False
        return self.has_address(records, 32, 128)

    def has_address(self, records: tuple, cidr4: int, cidr6: int) -> bool:
        family, shift = (socket.AF_INET6, 128 - cidr6) if self.v6 else (socket.AF_INET, 32 - cidr4)
        for text in records:
            try:
                value = int.from_bytes(socket.inet_pton(family, text), "big")
            except (OSError, TypeError):
                continue
            if (value ^ self.ip) >> shift == 0:
                return True
        return False

    # -- Evaluation ------------------------------------------------------------------------------------------------

    async def find_record(self, domain: str | None) -> Record | None:
        if domain is None:
            return None
        return select_record((await self.lookup(domain, "TXT")).records, self.scope)

    async def evaluate(self, record: Record, domain: str) -> _Outcome:
        for mechanism in record.mechanisms:
            if await self.matches(mechanism, domain):
                return _Outcome(mechanism.result, mechanism.text, record.explanation, domain)
        if record.redirect is None:
            return _Outcome("neutral", "default", None, domain)
        self.count_term()
        target = await self.target(record.redirect, domain)
        redirected = await self.find_record(target)
        if redirected is None:
            raise PermanentError(f"redirect={target or '(invalid name)'} names a domain without an SPF record")
        assert target is not None
        outcome = await self.evaluate(redirected, target)
        return _Outcome(outcome.result, f"redirect={target}", outcome.explanation, outcome.domain)

    async def matches(self, mechanism: Mechanism, domain: str) -> bool:
        kind = mechanism.kind
        if kind == "ip4":
            return not self.v6 and (self.ip ^ mechanism.network) >> (32 - mechanism.cidr4) == 0
        if kind == "ip6":
            return self.v6 and (self.ip ^ mechanism.network) >> (128 - mechanism.cidr6) == 0
        if kind == "all":
            return True
        self.count_term()
        target = await self.target(mechanism.domain, domain)
        if kind == "include":
            included = await self.find_record(target)
            if included is None:
                raise PermanentError(f"{mechanism.text} names a domain without an SPF record")
            assert target is not None
            return (await self.evaluate(included, target)).result == "pass"
        if kind == "a":
            records = await self.term_lookup(target, "AAAA" if self.v6 else "A")
            return self.has_address(records, mechanism.cidr4, mechanism.cidr6)
        if kind == "mx":
            return await self.match_mx(target, mechanism)
        if kind == "exists":
            return bool(await self.term_lookup(target, "A"))
        return await self.match_ptr(target)

    async def match_mx(self, target: str | None, mechanism: Mechanism) -> bool:
        exchanges = await self.term_lookup(target, "MX")
        if len(exchanges) > _MAX_MX_RECORDS:
            raise PermanentError(f"{target} has more than {_MAX_MX_RECORDS} MX records")
        rdtype = "AAAA" if self.v6 else "A"
        for _, host in sorted(exchanges):
            if host and self.has_address((await self.lookup(host, rdtype)).records, mechanism.cidr4, mechanism.cidr6):
                return True
        return False

    async def match_ptr(self, target: str | None) -> bool:
        names = await self.reverse_names(for_mechanism=True)
        if target is None:
            return False
        target = target.lower()
        suffix = "." + target
        for name in names:
            if (name == target or name.endswith(suffix)) and await self.points_back(name):
                return True
        return False

    # -- Macros and explanations -----------------------------------------------------------------------------------

    async def target(self, spec: DomainSpec | None, domain: str) -> str | None:
        """The DNS name a domain-spec designates (the current domain when absent); None when it is unusable."""
        if spec is None:
            return domain
        if spec.__class__ is str:
            return spec  # type: ignore[return-value]
        return dns_name(await self.expand(spec, domain))  # type: ignore[arg-type]

    async def expand(self, parts: MacroString, domain: str) -> str:
        values = self.values
        if any(part.__class__ is Macro and part.letter == "p" for part in parts):  # type: ignore[union-attr]
            values["p"] = await self.validated_name(domain)
        values["d"] = domain
        return expand(parts, values)

    async def validated_name(self, domain: str) -> str:
        """``%{p}``: a PTR name of the client that points back, preferring ``domain`` itself, then its sub-domains."""
        domain = domain.lower()
        names = await self.reverse_names(for_mechanism=False)
        ranked = sorted(names, key=lambda name: 0 if name == domain else 1 if name.endswith("." + domain) else 2)
        for name in ranked:
            if await self.points_back(name):
                return name
        return "unknown"

    async def explain(self, outcome: _Outcome) -> str:
        """The explanation for a Fail: the deciding record's ``exp=`` text, else the configured default."""
        self.values["t"] = str(int(time.time()))
        if outcome.explanation is not None:
            try:
                name = await self.target(outcome.explanation, outcome.domain)
                records = (await self.lookup(name, "TXT")).records if name else ()
                if len(records) == 1:
                    text = b"".join(records[0]).decode("ascii")
                    if text.isprintable():
                        parts = parse_macro_string(text, EXPLANATION_LETTERS)[0]
                        return await self.expand(parts, outcome.domain)
            except (DnsTempError, _TooLong, UnicodeDecodeError, MacroSyntaxError):
                pass
        return await self.expand(self.checker.default_explanation, outcome.domain)

