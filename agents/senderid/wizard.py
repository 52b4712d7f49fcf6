"""The SPF record wizard: survey a domain, propose its ``v=spf1`` (and ``spf2.0/pra``) record, prove it.

Microsoft's Sender ID Framework SPF Record Wizard walked a publisher through their mail servers and wrote the record;
this does the same, and then refuses to hand over a record it has not checked. :func:`survey` reads what DNS already
says (MX hosts and their addresses, the domain's own addresses, the records published now); :func:`propose` turns
the publisher's :class:`Answers` into records and proves them before returning a :class:`Proposal`:

* every declared sender passes and an address outside them fails (or soft-fails), through this project's own engine
  (:class:`~agents.senderid.spf.SpfChecker`) run against DNS as it will answer once the records are published;
* the records' lint (:func:`~agents.senderid.lint.lint_domain`) has no error, in particular they stay within RFC 7208's
  10 DNS lookups: when the declared servers and providers would need more, the wizard **flattens** terms to the
  ``ip4``/``ip6`` addresses they designate today (the domain's own hosts first, then the costliest includes), and
  says so, because a flattened term no longer follows its owner's changes.

A record it cannot make valid (an include without an SPF record, a host without addresses, includes that need more
than 10 lookups and cannot be flattened) raises :class:`WizardError` with a sentence saying why.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from transport.core.dns import DnsAnswer, DnsTempError, Resolver
from transport.core.errors import TransportError

from .lint import MAX_DNS_LOOKUPS, MAX_STRING, MAX_VOID_LOOKUPS, LintReport, ProblemKind, RecordKind, RecordReport, lint_domain
from .spf import SpfChecker

__all__ = ["AllPolicy", "Answers", "Check", "MxHost", "Proposal", "Survey", "WizardError", "propose", "split_strings",
           "survey"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Addresses tried as "a server the domain did not declare" (documentation ranges, RFC 5737 and RFC 3849).
_OUTSIDERS = ("203.0.113.254", "198.51.100.254", "192.0.2.254", "2001:db8:ffff::254", "2001:db8:fffe::254")


class WizardError(TransportError):
    """The answers cannot be made into a valid record; the message says why and what to do."""


class AllPolicy(enum.Enum):
    """What the record says about every other server: ``-all`` (Fail) or ``~all`` (SoftFail)."""

    FAIL = "fail"
    SOFTFAIL = "softfail"

    @property
    def term(self) -> str:
        return "-all" if self is AllPolicy.FAIL else "~all"


@dataclass(frozen=True, slots=True)
class Answers:
    """The publisher's answers, from the prompts or from the command's flags (the same fields either way).

    ``policy`` None means the default: SoftFail while servers are being declared (a forgotten server is marked, not
    refused), Fail for a domain that sends no mail.
    """

    outbound_ips: tuple[str, ...] = ()
    outbound_hosts: tuple[str, ...] = ()
    includes: tuple[str, ...] = ()
    no_mail: bool = False
    policy: AllPolicy | None = None
    pra: bool = False

    @property
    def all_policy(self) -> AllPolicy:
        return self.policy or (AllPolicy.FAIL if self.no_mail else AllPolicy.SOFTFAIL)

    def as_flags(self) -> list[str]:
        """The same answers as command-line flags, so an interactive session can be repeated by a script."""
        flags = ["--no-mail"] if self.no_mail else []
        flags += [f"--outbound-ip {ip}" for ip in self.outbound_ips]
        flags += [f"--outbound-host {host}" for host in self.outbound_hosts]
        flags += [f"--include {domain}" for domain in self.includes]
        return flags + [f"--all {self.all_policy.value}", "--pra" if self.pra else "--no-pra"]


@dataclass(frozen=True, slots=True)
class MxHost:
    preference: int
    host: str
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Survey:
    """What DNS says about the domain before the wizard changes anything."""

    domain: str
    mx: tuple[MxHost, ...]
    addresses: tuple[str, ...]
    current: LintReport


@dataclass(frozen=True, slots=True)
class Check:
    """One proof: the engine's result for ``ip`` (``who`` says why it was tried) in ``scope`` against ``expected``."""

    ip: str
    who: str
    scope: str
    expected: str
    result: str

    @property
    def ok(self) -> bool:
        return self.result == self.expected


@dataclass(frozen=True, slots=True)
class Proposal:
    """The records to publish, why they look as they do (``notes``), and the proof that they do what was asked.

    ``replaces`` are the SPF and Sender ID records published now, which must go when these are added.
    """

    domain: str
    spf: str
    pra: str | None
    lint: LintReport
    checks: tuple[Check, ...]
    notes: tuple[str, ...] = ()
    replaces: tuple[str, ...] = ()

    @property
    def records(self) -> tuple[str, ...]:
        return (self.spf,) if self.pra is None else (self.spf, self.pra)

    @property
    def lookups(self) -> int:
        spf = self.lint.record(RecordKind.SPF)
        return spf.lookups if spf else 0


def split_strings(text: str) -> tuple[str, ...]:
    """A record as the DNS strings that carry it: at most 255 characters each, joined with nothing by readers."""
    return tuple(text[i:i + MAX_STRING] for i in range(0, len(text), MAX_STRING)) or ("",)


async def _addresses(resolver: Resolver, host: str) -> tuple[str, ...]:
    found: list[str] = []
    for rdtype in ("A", "AAAA"):
        found += (await resolver.lookup(host, rdtype)).records  # type: ignore[arg-type]
    return tuple(found)


async def survey(resolver: Resolver, domain: str) -> Survey:
    """The domain's MX hosts and their addresses, its own addresses, and the lint of what it publishes now."""
    domain = domain.rstrip(".").lower()
    try:
        mx = (await resolver.lookup(domain, "MX")).records
        hosts = [MxHost(pref, host, await _addresses(resolver, host))  # type: ignore[arg-type]
                 for pref, host in sorted(mx) if host]  # type: ignore[misc]
        addresses = await _addresses(resolver, domain)
    except DnsTempError as exc:
        raise WizardError(f"cannot survey {domain}: {exc}; try again, or answer from a zone file with --zone") from None
    return Survey(domain, tuple(hosts), addresses, await lint_domain(resolver, domain))


class _Published:
    """DNS as it will answer once the proposal is published: the domain's SPF/Sender ID TXT records replaced."""

    def __init__(self, resolver: Resolver, domain: str, txt: tuple[tuple[bytes, ...], ...]) -> None:
        self.resolver = resolver
        self.domain = domain
        self.txt = txt

    async def lookup(self, name: str, rdtype: str) -> DnsAnswer:
        if rdtype.upper() == "TXT" and name.rstrip(".").lower() == self.domain:
            return DnsAnswer(self.domain, "TXT", "NOERROR", self.txt, 3600)
        return await self.resolver.lookup(name, rdtype)


@dataclass(slots=True)
class _Sender:
    """One term the record will hold: what it costs in lookups, and the networks it would flatten to (None: cannot)."""

    term: str
    lookups: int
    networks: tuple[str, ...] | None
    own: bool
    voids: int = 0
    flattened: bool = False


def _pass_networks(record: RecordReport) -> tuple[str, ...] | None:
    """Every network ``record`` passes, when its terms can be replaced by them; None when they cannot.

    Only ``ip4``/``ip6``/``a``/``mx`` and (recursively) ``include``/``redirect`` terms that pass can be flattened: a
    qualified term, ``+all``, ``ptr``, ``exists`` or a macro decides per message, which no address list reproduces.
    """
    networks: list[str] = []
    for term in record.terms:
        if term.kind == "all":
            return None if term.qualifier in ("", "+") else tuple(networks)
        if term.qualifier not in ("", "+") or term.dynamic or term.kind in ("ptr", "exists"):
            return None
        if term.kind in ("include", "redirect"):
            inner = _pass_networks(term.record) if term.record else None
            if inner is None:
                return None
            networks += inner
        else:
            networks += term.networks
    return tuple(networks)


def _collapse(networks: Iterable[Network]) -> list[str]:
    """ip4 terms then ip6 terms, adjacent networks merged (exactly the same addresses), /32 and /128 bare."""
    terms: list[str] = []
    for version, kind in ((4, "ip4"), (6, "ip6")):
        for net in ipaddress.collapse_addresses(n for n in networks if n.version == version):  # type: ignore[misc]
            terms.append(f"{kind}:{net.network_address if net.num_addresses == 1 else net}")
    return terms


class _Builder:
    """Turns answers into terms, flattens until the lookups fit, and proves the result."""

    def __init__(self, resolver: Resolver, found: Survey, answers: Answers) -> None:
        self.resolver = resolver
        self.survey = found
        self.domain = found.domain
        self.answers = answers
        self.notes: list[str] = []
        self.samples: list[tuple[str, str]] = []  # (ip, who) the proof expects to pass
        self.authorised: list[Network] = []  # everything the record lets send: outsiders are chosen outside it

    def networks(self) -> list[Network]:
        out = []
        for text in self.answers.outbound_ips:
            try:
                net = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise WizardError(f"--outbound-ip {text!r} is not an IP address or network") from None
            out.append(net)
            self.authorised.append(net)
            self.samples.append((str(net.network_address), f"--outbound-ip {text}"))
        return out

    async def hosts(self) -> list[_Sender]:
        """``mx`` when every MX host sends, ``a`` for the domain itself, ``a:host`` for the others."""
        known = {h.host: h.addresses for h in self.survey.mx} | {self.domain: self.survey.addresses}
        addresses: dict[str, tuple[str, ...]] = {}
        for host in dict.fromkeys(h.rstrip(".").lower() for h in self.answers.outbound_hosts):
            found = known.get(host)
            if found is None:
                try:
                    found = await _addresses(self.resolver, host)
                except DnsTempError as exc:
                    raise WizardError(f"cannot look up {host}: {exc}") from None
            if not found:
                raise WizardError(f"{host} has no A or AAAA record, so a record cannot name it: give its addresses "
                                  "with --outbound-ip, or publish its A record first")
            addresses[host] = found
            self.samples += [(ip, host) for ip in found]
            self.authorised += [ipaddress.ip_network(ip) for ip in found]
        senders = []
        mx_hosts = [h.host for h in self.survey.mx]
        if mx_hosts and all(h in addresses for h in mx_hosts):
            senders.append(_Sender("mx", 1, tuple(a for h in mx_hosts for a in addresses.pop(h)), own=True))
        for host, found in addresses.items():
            v4_only = not any(":" in a for a in found)  # void for an IPv6 client
            senders.append(_Sender("a" if host == self.domain else f"a:{host}", 1, found, own=True, voids=v4_only))
        return senders

    async def includes(self) -> list[_Sender]:
        senders = []
        for domain in dict.fromkeys(d.rstrip(".").lower() for d in self.answers.includes):
            report = await lint_domain(self.resolver, domain)
            record = report.record(RecordKind.SPF)
            failure = next((p for p in report.problems if p.kind is ProblemKind.DNS_ERROR), None)
            if failure is not None:
                raise WizardError(f"include:{domain}: its records could not be read ({failure.message}); try again")
            if record is None or not record.valid:
                what = "does not exist" if report.rcode == "NXDOMAIN" else "publishes no valid v=spf1 record"
                raise WizardError(f"include:{domain}: {domain} {what}, so the record would be a PermError for every "
                                  "message; check the provider's documentation for the domain to include")
            networks = _pass_networks(record)
            self.authorised += [ipaddress.ip_network(n) for n in networks or ()]
            self.samples += [(str(ipaddress.ip_network(n).network_address), f"include:{domain}")
                             for n in (networks or ())[:3]]
            senders.append(_Sender(f"include:{domain}", 1 + record.lookups, networks, own=False,
                                   voids=record.void_lookups))
        return senders

    def fit(self, senders: list[_Sender]) -> None:
        """Flatten terms, the domain's own first, then the costliest includes, until the lookups are within 10 and
        the void lookups (an IPv6 client's, for hosts without AAAA records) within 2."""
        def cost() -> tuple[int, int]:
            kept = [s for s in senders if not s.flattened]
            return sum(s.lookups for s in kept), sum(s.voids for s in kept)

        needed = cost()
        order = [s for s in senders if s.own] + sorted((s for s in senders if not s.own), key=lambda s: -s.lookups)
        for sender in order:
            lookups, voids = cost()
            if lookups <= MAX_DNS_LOOKUPS and voids <= MAX_VOID_LOOKUPS:
                break
            if sender.networks is None or (lookups <= MAX_DNS_LOOKUPS and not sender.voids):
                continue
            sender.flattened = True
            why = (f"the record needed {needed[0]} DNS lookups and RFC 7208 allows {MAX_DNS_LOOKUPS}"
                   if needed[0] > MAX_DNS_LOOKUPS else
                   f"{needed[1]} of its lookups were void for an IPv6 client and RFC 7208 allows {MAX_VOID_LOOKUPS}")
            self.notes.append(f"{sender.term} flattened to the {len(sender.networks)} address(es) it designates today, "
                              f"because {why}; re-run the wizard when {sender.term.partition(':')[2] or self.domain} "
                              "changes them")
        lookups, voids = cost()
        if lookups > MAX_DNS_LOOKUPS or voids > MAX_VOID_LOOKUPS:
            stuck = ", ".join(f"{s.term} ({s.lookups})" for s in senders if s.networks is None)
            raise WizardError(f"the record would need {lookups} DNS lookups ({voids} void) even with every term that "
                              f"can be flattened flattened, over the {MAX_DNS_LOOKUPS} ({MAX_VOID_LOOKUPS} void) "
                              f"RFC 7208 allows: {stuck} cannot be flattened (their records use ptr, exists, macros "
                              "or exclusions); drop one, or ask the provider for a smaller include")

    async def build(self) -> Proposal:
        self.validate()
        networks = self.networks()
        senders = await self.hosts() + await self.includes()
        self.fit(senders)
        for sender in senders:
            if sender.flattened:
                networks += [ipaddress.ip_network(n) for n in sender.networks or ()]
        terms = _collapse(networks) + [s.term for s in senders if not s.flattened]
        body = " ".join(terms + [self.answers.all_policy.term])
        spf = f"v=spf1 {body}"
        pra = f"spf2.0/pra {body}" if self.answers.pra else None
        return await self.prove(spf, pra)

    def validate(self) -> None:
        declared = self.answers.outbound_ips or self.answers.outbound_hosts or self.answers.includes
        if self.answers.no_mail and declared:
            raise WizardError(f"--no-mail says {self.domain} sends no mail, but servers were declared for it: "
                              "choose one")
        if not self.answers.no_mail and not declared:
            raise WizardError(f"say which servers send mail for {self.domain} (--outbound-host, --outbound-ip, "
                              "--include), or that it sends none (--no-mail)")

    def outsiders(self) -> list[tuple[str, str]]:
        """Addresses the record must not let send: surveyed servers not declared, and one IPv4 and one IPv6 address
        outside everything declared."""
        def free(ip: str) -> bool:
            return not any(ipaddress.ip_address(ip) in n for n in self.authorised)

        surveyed = [(ip, f"{h.host}, not declared") for h in self.survey.mx for ip in h.addresses]
        surveyed += [(ip, f"{self.domain}, not declared") for ip in self.survey.addresses]
        out = [(ip, who) for ip, who in surveyed if free(ip)]
        for version in (4, 6):
            ip = next((ip for ip in _OUTSIDERS if ipaddress.ip_address(ip).version == version and free(ip)), None)
            if ip is not None:
                out.append((ip, "not declared"))
        return out

    async def prove(self, spf: str, pra: str | None) -> Proposal:
        current = self.survey.current
        published = tuple(tuple(s.encode() for s in split_strings(t)) for t in (spf, pra) if t is not None)
        kept = tuple((t.encode(),) for t in current.other_txt)
        dns = _Published(self.resolver, self.domain, kept + published)
        lint = await lint_domain(dns, self.domain)
        if lint.errors:
            raise WizardError(f"the record {spf!r} would still be wrong: " + "; ".join(p.message for p in lint.errors))
        outsiders = self.outsiders()
        checker = SpfChecker(dns, receiver="wizard")
        expected_other = self.answers.all_policy.value
        checks = []
        for ip, who, expected in ([(ip, who, "pass") for ip, who in dict.fromkeys(self.samples)]
                                  + [(ip, who, expected_other) for ip, who in outsiders]):
            for scope in ("spf", "pra") if pra else ("spf",):
                result = await checker.check_host(ip, self.domain, f"postmaster@{self.domain}", scope=scope)
                checks.append(Check(ip, who, scope, expected, result.result))
        wrong = [c for c in checks if not c.ok]
        if wrong:
            raise WizardError(f"the record {spf!r} does not do what was asked: " + "; ".join(
                f"{c.ip} ({c.who}) gets {c.result}, not {c.expected}" for c in wrong))
        replaces = tuple(r.text for r in current.records)
        return Proposal(self.domain, spf, pra, lint, tuple(checks), tuple(self.notes), replaces)


async def propose(resolver: Resolver, found: Survey, answers: Answers) -> Proposal:
    """The records for ``answers``, within the lookup limits and proven; :class:`WizardError` when impossible."""
    return await _Builder(resolver, found, answers).build()
