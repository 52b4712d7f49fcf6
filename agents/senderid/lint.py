"""A linting ``nslookup -q=TXT``: a domain's SPF and Sender ID records, expanded, counted and checked.

The SPF engine (:mod:`.spf`) answers "does this record let this IP send?"; a publisher needs the other question,
"is this record right?". :func:`lint_domain` reads every ``v=spf1`` and ``spf2.0/…`` record at a domain, follows each
mechanism to what it designates (addresses, MX hosts, the records behind ``include:`` and ``redirect=``) and lists
every problem found, each as a :class:`Problem` with a :class:`ProblemKind` and a sentence.

Lookups are counted for the **worst case**, which is the one forged mail hits: an IPv4 client that matches no term
and has no reverse DNS, so every term is evaluated. The RFC 7208 §4.6.4 limits (10 DNS-querying terms, 2 void
lookups) apply to that count exactly as the engine applies them while evaluating; a record over them is a PermError
for every such client. ``ptr`` and terms holding macros count as void in that worst case (their answer depends on the
client or the message, and for a forger it is usually empty).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass

from transport.core.dns import DnsAnswer, DnsNameError, DnsTempError, Resolver

from .records import DomainSpec, Mechanism, PermanentError, Record, parse_record

__all__ = [
    "MAX_DNS_LOOKUPS", "MAX_STRING", "MAX_UDP_ANSWER", "MAX_VOID_LOOKUPS", "LintReport", "Problem", "ProblemKind",
    "RecordKind", "RecordReport", "Severity", "TermReport", "lint_domain", "txt_strings",
]

MAX_DNS_LOOKUPS = 10
MAX_VOID_LOOKUPS = 2
#: Longest DNS character-string; a longer record must be split into several (joined with nothing between them).
MAX_STRING = 255
#: A DNS answer over UDP without EDNS; RFC 7208 §3.4 asks records to keep the TXT answer within it.
MAX_UDP_ANSWER = 512
#: Expansion stops beyond this many lookups, so a pathological tree cannot keep the lint busy for long.
_EXPANSION_CAP = 50
_MAX_MX = 10
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?\Z")


class Severity(enum.Enum):
    """ERROR: receivers get a PermError or the record cannot do its job. WARNING: it works, but is fragile."""

    ERROR = "error"
    WARNING = "warning"


class ProblemKind(enum.Enum):
    """What is wrong; the value is the short label shown in tables and JSON."""

    NO_RECORD = "no record"
    SYNTAX = "syntax"
    DUPLICATE = "duplicate records"
    PTR = "ptr"
    LONG_STRING = "over 255 characters"
    OVER_512 = "over 512 bytes"
    TOO_MANY_LOOKUPS = "lookups over 10"
    TOO_MANY_VOIDS = "void lookups over 2"
    MISSING_TARGET = "include does not exist"
    NOT_A_HOST_NAME = "not a host name"
    VOID_LOOKUP = "void lookup"
    TOO_MANY_MX = "over 10 MX"
    LOOP = "loop"
    PASS_ALL = "+all"
    DNS_ERROR = "DNS error"

    @property
    def severity(self) -> Severity:
        return Severity.WARNING if self in _WARNINGS else Severity.ERROR


_WARNINGS = frozenset({ProblemKind.NO_RECORD, ProblemKind.PTR, ProblemKind.LONG_STRING, ProblemKind.OVER_512,
                       ProblemKind.VOID_LOOKUP})


class RecordKind(enum.Enum):
    SPF = "v=spf1"
    SENDER_ID = "spf2.0"


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: ``where`` names the record (domain and version) or term it is about."""

    kind: ProblemKind
    where: str
    message: str

    @property
    def severity(self) -> Severity:
        return self.kind.severity


@dataclass(frozen=True, slots=True)
class TermReport:
    """One term of a record and what it designates.

    ``networks`` are the addresses it authorises (``ip_network`` text, CIDRs applied); ``hosts`` the MX hosts of an
    ``mx``; ``record`` the record behind an ``include:`` or ``redirect=``; ``lookups`` the DNS-querying terms it
    costs, its own included; ``void`` whether its own query is void in the worst case for an IPv4 client, ``void6``
    for an IPv6 one when that differs (an ``a`` whose host has no AAAA record); ``dynamic`` that what it
    designates depends on the client or the message (``ptr``, macros), so it cannot be resolved ahead; ``note`` says
    so, or what answered instead of records (NXDOMAIN, no MX).
    """

    text: str
    kind: str
    qualifier: str
    target: str | None = None
    networks: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    record: RecordReport | None = None
    lookups: int = 0
    void: bool = False
    void6: bool | None = None
    note: str | None = None
    dynamic: bool = False


@dataclass(frozen=True, slots=True)
class RecordReport:
    """One record at one domain: its text as published (``strings``) and its expanded terms."""

    domain: str
    kind: RecordKind
    scopes: tuple[str, ...]
    text: str
    strings: tuple[str, ...]
    terms: tuple[TermReport, ...] = ()
    valid: bool = True

    @property
    def lookups(self) -> int:
        return sum(t.lookups for t in self.terms)

    @property
    def void_lookups(self) -> int:
        """The worse of the IPv4 and the IPv6 client's void lookups."""
        return max(self.family_voids())

    def family_voids(self) -> tuple[int, int]:
        v4 = v6 = 0
        for t in self.terms:
            inner = t.record.family_voids() if t.record else (0, 0)
            v4 += t.void + inner[0]
            v6 += (t.void if t.void6 is None else t.void6) + inner[1]
        return v4, v6

    @property
    def label(self) -> str:
        scopes = "/" + ",".join(self.scopes) if self.kind is RecordKind.SENDER_ID else ""
        return f"{self.domain} {self.kind.value}{scopes}"


@dataclass(frozen=True, slots=True)
class LintReport:
    """Everything :func:`lint_domain` found: the TXT answer, the SPF/Sender ID records, the problems."""

    domain: str
    rcode: str
    records: tuple[RecordReport, ...]
    problems: tuple[Problem, ...]
    other_txt: tuple[str, ...] = ()

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.ERROR)

    def record(self, kind: RecordKind) -> RecordReport | None:
        return next((r for r in self.records if r.kind is kind), None)


def txt_strings(strings: tuple[bytes, ...]) -> tuple[str, ...]:
    """A TXT RR's character-strings as text (undecodable bytes shown as U+FFFD, so they can be reported)."""
    return tuple(s.decode("ascii", "replace") for s in strings)


def _version(text: str) -> tuple[RecordKind, tuple[str, ...], int] | None:
    """The record's version tag: kind, Sender ID scopes, where the terms start; None for other TXT records."""
    head = text.split(" ", 1)[0].lower()
    if head == "v=spf1":
        return RecordKind.SPF, (), 6
    if head.startswith("spf2."):
        _, _, scopes = head.partition("/")
        return RecordKind.SENDER_ID, tuple(s for s in scopes.split(",") if s), len(head)
    return None


def _answer_size(domain: str, rrs: tuple[tuple[bytes, ...], ...]) -> int:
    """Bytes of the UDP answer to ``TXT domain`` holding ``rrs``: header, question, one compressed RR per record."""
    qname = sum(len(label) + 1 for label in domain.split(".") if label) + 1
    return 12 + qname + 4 + sum(12 + sum(1 + len(s) for s in strings) for strings in rrs)


class _Linter:
    """One run: the problems found so far and the total lookups, which bounds the expansion."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.problems: list[Problem] = []
        self.expanded_lookups = 0

    def problem(self, kind: ProblemKind, where: str, message: str) -> None:
        self.problems.append(Problem(kind, where, message))

    async def lookup(self, name: str, rdtype: str, where: str) -> DnsAnswer | None:
        """The answer, NXDOMAIN for a name DNS cannot carry, or None after recording a DNS error."""
        try:
            return await self.resolver.lookup(name, rdtype)
        except DnsNameError:
            return DnsAnswer(name, rdtype, "NXDOMAIN", (), 0)
        except DnsTempError as exc:
            self.problem(ProblemKind.DNS_ERROR, where, f"{exc}: the record could not be fully checked")
            return None

    async def domain(self, domain: str) -> LintReport:
        answer = await self.lookup(domain, "TXT", domain)
        if answer is None:
            return LintReport(domain, "TEMPERROR", (), tuple(self.problems))
        reports, others = await self.records(domain, answer, top=True, path=())
        if answer.rcode == "NXDOMAIN":
            self.problem(ProblemKind.NO_RECORD, domain, f"{domain} does not exist (NXDOMAIN): Sender ID checks of "
                         "mail claiming it fail, and SPF checks give None")
        elif not any(r.kind is RecordKind.SPF for r in reports):
            self.problem(ProblemKind.NO_RECORD, domain, f"{domain} publishes no v=spf1 record: receivers cannot tell "
                         "its mail from forged mail (`transport senderid wizard` proposes one)")
        size = _answer_size(domain, answer.records)  # type: ignore[arg-type]
        if size > MAX_UDP_ANSWER:
            self.problem(ProblemKind.OVER_512, domain, f"the TXT answer for {domain} is {size} bytes, over the "
                         f"{MAX_UDP_ANSWER} bytes of a plain UDP answer (RFC 7208 §3.4): receivers must retry over "
                         "TCP, and some give up")
        return LintReport(domain, answer.rcode, tuple(reports), tuple(self.problems), tuple(others))

    async def records(
        self, domain: str, answer: DnsAnswer, *, top: bool, path: tuple[str, ...],
    ) -> tuple[list[RecordReport], list[str]]:
        """The SPF and Sender ID records among a TXT answer, each parsed and expanded; and the other TXT texts."""
        found: list[RecordReport] = []
        others: list[str] = []
        for strings in answer.records:
            parts = txt_strings(strings)  # type: ignore[arg-type]
            text = "".join(parts)
            version = _version(text)
            if version is None:
                others.append(text)
                continue
            kind, scopes, start = version
            report = await self.record(domain, kind, scopes, text, parts, start, top=top, path=path + (domain,))
            found.append(report)
        self.duplicates(found)
        return found, others

    def duplicates(self, found: list[RecordReport]) -> None:
        spf = [r for r in found if r.kind is RecordKind.SPF]
        if len(spf) > 1:
            self.problem(ProblemKind.DUPLICATE, spf[0].label, f"{spf[0].domain} publishes {len(spf)} v=spf1 "
                         "records: every SPF check of it is a PermError (RFC 7208 §4.5); merge them into one")
        for scope in sorted({s for r in found for s in r.scopes}):
            covering = [r for r in found if scope in r.scopes]
            if len(covering) > 1:
                self.problem(ProblemKind.DUPLICATE, covering[0].label, f"{len(covering)} spf2.0 records at "
                             f"{covering[0].domain} cover the {scope} scope: Sender ID checks of it are a PermError "
                             "(RFC 4406 §3.2)")

    async def record(
        self, domain: str, kind: RecordKind, scopes: tuple[str, ...], text: str, strings: tuple[str, ...],
        start: int, *, top: bool, path: tuple[str, ...],
    ) -> RecordReport:
        label = RecordReport(domain, kind, scopes, text, strings).label
        if top and len(text) > MAX_STRING:
            self.problem(ProblemKind.LONG_STRING, label, f"the record is {len(text)} characters, more than one DNS "
                         f"string holds ({MAX_STRING}): it must be published as several strings, joined with nothing "
                         "between them, which some DNS software and providers split or truncate")
        try:
            if not text.isascii():
                raise PermanentError("the record contains non-ASCII characters")
            parsed = parse_record(text, start)
        except PermanentError as exc:
            joined = f" (its {len(strings)} strings are joined with nothing between them)" if len(strings) > 1 else ""
            self.problem(ProblemKind.SYNTAX, label, f"{exc}{joined}: every check against it is a PermError")
            return RecordReport(domain, kind, scopes, text, strings, valid=False)
        if kind is RecordKind.SENDER_ID and not scopes:
            self.problem(ProblemKind.SYNTAX, label, f"{text.split(' ', 1)[0]!r} names no scope (spf2.0/pra, "
                         "spf2.0/mfrom or spf2.0/mfrom,pra)")
        terms = await self.terms(parsed, domain, label, path)
        report = RecordReport(domain, kind, scopes, text, strings, terms)
        if top:
            self.limits(report)
        return report

    def limits(self, report: RecordReport) -> None:
        if report.lookups > MAX_DNS_LOOKUPS:
            self.problem(ProblemKind.TOO_MANY_LOOKUPS, report.label, f"the record needs {report.lookups} DNS lookups, "
                         f"over the {MAX_DNS_LOOKUPS} RFC 7208 allows: mail from servers it does not list gets a "
                         "PermError instead of the record's verdict (flatten includes to ip4/ip6, or drop some)")
        if report.void_lookups > MAX_VOID_LOOKUPS:
            v4, v6 = report.family_voids()
            client = "" if v4 == v6 else " for an IPv6 client" if v6 > v4 else " for an IPv4 client"
            self.problem(ProblemKind.TOO_MANY_VOIDS, report.label, f"{report.void_lookups} of its lookups find nothing "
                         f"(void){client}, over the {MAX_VOID_LOOKUPS} RFC 7208 allows: mail from servers it does not list "
                         "gets a PermError instead of the record's verdict")

    async def terms(self, record: Record, domain: str, label: str, path: tuple[str, ...]) -> tuple[TermReport, ...]:
        out: list[TermReport] = []
        has_all = False
        for m in record.mechanisms:
            if has_all:  # `all` always matches: the engine never gets further
                out.append(TermReport(m.text, m.kind, "", note="never evaluated: it follows all"))
            else:
                out.append(await self.term(m, domain, label, path))
                has_all = m.kind == "all"
        for m in record.mechanisms:
            if m.kind == "all" and m.result == "pass":
                self.problem(ProblemKind.PASS_ALL, label, f"{m.text} lets every host on the internet send as "
                             f"{domain}: the record protects nothing")
        if record.redirect is not None and not has_all:
            out.append(await self.include_like("redirect", f"redirect={_spec_text(record.redirect)}", "",
                                               record.redirect, domain, label, path))
        return tuple(out)

    async def term(self, m: Mechanism, domain: str, label: str, path: tuple[str, ...]) -> TermReport:
        qualifier = m.text[0] if m.text[0] in "+-~?" else ""
        if m.kind in ("ip4", "ip6"):
            network = ipaddress.ip_network(
                (ipaddress.IPv4Address if m.kind == "ip4" else ipaddress.IPv6Address)(m.network))
            prefix = m.cidr4 if m.kind == "ip4" else m.cidr6
            return TermReport(m.text, m.kind, qualifier, networks=(str(network.supernet(new_prefix=prefix)),))
        if m.kind == "all":
            return TermReport(m.text, m.kind, qualifier)
        if m.kind == "include":
            assert m.domain is not None
            return await self.include_like("include", m.text, qualifier, m.domain, domain, label, path)
        target = domain if m.domain is None else m.domain
        self.expanded_lookups += 1
        if not isinstance(target, str):
            return TermReport(m.text, m.kind, qualifier, _spec_text(target), lookups=1, void=True,
                              note="depends on the message (macros): void in the worst case", dynamic=True)
        if m.kind == "ptr":
            self.problem(ProblemKind.PTR, label, f"{m.text}: RFC 7208 §5.5 says do not use ptr: it is slow, it costs "
                         "receivers several DNS lookups, it is void for every client without reverse DNS (which "
                         "counts towards the limit of 2), and large receivers ignore it; list the servers instead")
            return TermReport(m.text, m.kind, qualifier, target, lookups=1, void=True,
                              note="depends on the client's reverse DNS: void when it has none", dynamic=True)
        if not _is_host_name(target):
            hint = next((f" (a doubled '{p}'?)" for p in ("mx:", "a:", "include:", "ip4:") if target.startswith(p)), "")
            self.problem(ProblemKind.NOT_A_HOST_NAME, label, f"{m.text}: {target!r} is not a host name{hint}, so this "
                         "term can never match and its lookup is void")
        if m.kind == "exists":
            answer = await self.lookup(target, "A", label)
            void = answer is not None and not answer.records
            return TermReport(m.text, m.kind, qualifier, target, lookups=1, void=void,
                              note=f"{target} {answer.rcode}" if answer else "DNS error")
        if m.kind == "a":
            networks, note = await self.addresses(target, m, label)
            void = not any(":" not in n for n in networks) and note != "DNS error"
            void6 = not any(":" in n for n in networks) and note != "DNS error"
            if void:
                self.void(m.text, target, note or "no A record", label)
            return TermReport(m.text, m.kind, qualifier, target, tuple(networks), lookups=1, void=void, void6=void6,
                              note=note)
        return await self.mx(m, qualifier, target, label)

    async def mx(self, m: Mechanism, qualifier: str, target: str, label: str) -> TermReport:
        answer = await self.lookup(target, "MX", label)
        if answer is None:
            return TermReport(m.text, m.kind, qualifier, target, lookups=1, note="DNS error")
        if not answer.records:
            note = "NXDOMAIN" if answer.rcode == "NXDOMAIN" else "no MX records"
            hint = ""
            if note != "NXDOMAIN" and m.domain is not None:
                found, _ = await self.addresses(target, m, label)
                hint = f"; it has an address, so a:{target} may be what was meant" if found else ""
            self.void(m.text, target, note, label, hint)
            return TermReport(m.text, m.kind, qualifier, target, lookups=1, void=True, note=note)
        if len(answer.records) > _MAX_MX:
            self.problem(ProblemKind.TOO_MANY_MX, label, f"{m.text}: {target} has {len(answer.records)} MX records, "
                         f"over the {_MAX_MX} RFC 7208 §4.6.4 allows: a PermError")
        hosts = tuple(host for _, host in sorted(answer.records))  # type: ignore[misc]
        networks: list[str] = []
        for host in hosts[:_MAX_MX]:
            found, _ = await self.addresses(host, m, label)
            networks += found
        return TermReport(m.text, m.kind, qualifier, target, tuple(dict.fromkeys(networks)), hosts, lookups=1)

    def void(self, term: str, target: str, note: str, label: str, hint: str = "") -> None:
        what = "does not exist (NXDOMAIN)" if note == "NXDOMAIN" else f"has {note}"
        self.problem(ProblemKind.VOID_LOOKUP, label, f"{term}: {target} {what}, so the term matches nothing and "
                     f"its lookup is void (at most {MAX_VOID_LOOKUPS} are allowed){hint}")

    async def addresses(self, host: str, m: Mechanism, label: str) -> tuple[list[str], str | None]:
        """``host``'s A and AAAA addresses as networks with the term's CIDRs; a note when it has none."""
        networks: list[str] = []
        rcode = "NODATA"
        for rdtype, prefix in (("A", m.cidr4), ("AAAA", m.cidr6)):
            answer = await self.lookup(host, rdtype, label)
            if answer is None:
                return networks, "DNS error"
            rcode = answer.rcode if answer.rcode == "NXDOMAIN" else rcode
            networks += [str(ipaddress.ip_network(f"{a}/{prefix}", strict=False)) for a in answer.records]
        return networks, None if networks else ("NXDOMAIN" if rcode == "NXDOMAIN" else "no A or AAAA record")

    async def include_like(
        self, kind: str, text: str, qualifier: str, spec: DomainSpec, domain: str, label: str, path: tuple[str, ...],
    ) -> TermReport:
        """An ``include:`` or ``redirect=``: one lookup, plus the lookups of the record it names, expanded."""
        self.expanded_lookups += 1
        if not isinstance(spec, str):
            return TermReport(text, kind, qualifier, _spec_text(spec), lookups=1,
                              note="depends on the message (macros): not expanded", dynamic=True)
        if spec in path:
            self.problem(ProblemKind.LOOP, label, f"{text} leads back to {spec}: every check that reaches it runs "
                         "out of lookups (a PermError)")
            return TermReport(text, kind, qualifier, spec, lookups=1, note="loop")
        if self.expanded_lookups > _EXPANSION_CAP:
            return TermReport(text, kind, qualifier, spec, lookups=1, note="not expanded: far over the lookup limit")
        answer = await self.lookup(spec, "TXT", label)
        if answer is None:
            return TermReport(text, kind, qualifier, spec, lookups=1, note="DNS error")
        found, _ = await self.records(spec, answer, top=False, path=path)
        spf = next((r for r in found if r.kind is RecordKind.SPF), None)
        if spf is None:
            what = "does not exist" if answer.rcode == "NXDOMAIN" else "publishes no v=spf1 record"
            self.problem(ProblemKind.MISSING_TARGET, label, f"{text}: {spec} {what}: every check that reaches this "
                         "term is a PermError")
            return TermReport(text, kind, qualifier, spec, lookups=1, note=what)
        return TermReport(text, kind, qualifier, spec, record=spf, lookups=1 + spf.lookups)


def _spec_text(spec: DomainSpec) -> str:
    if isinstance(spec, str):
        return spec
    return "".join(p if isinstance(p, str) else f"%{{{p.letter}}}" for p in spec)


def _is_host_name(name: str) -> bool:
    return all(_LABEL.match(label) for label in name.split("."))


async def lint_domain(resolver: Resolver, domain: str) -> LintReport:
    """Read ``domain``'s TXT records and report its SPF and Sender ID records with every problem found."""
    return await _Linter(resolver).domain(domain.rstrip(".").lower())
