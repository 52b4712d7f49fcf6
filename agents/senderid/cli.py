"""`transport senderid test|lookup|wizard`: Exchange's Test-SenderId, a record linter, and the SPF record wizard.

`test` checks an IP against a domain's records with every DNS query shown. Scopes: `pra` (Sender ID for a purported
responsible address: `spf2.0/pra` records first, then `v=spf1`), `mfrom` (Sender ID's MAIL FROM scope) and `spf`
(plain RFC 7208, `v=spf1` only). `--sender ''` checks the HELO identity, as RFC 7208 does for a null reverse path.
`lookup` lints a domain's records (:mod:`.lint`); `wizard` proposes and proves new ones (:mod:`.wizard`), asking on a
terminal (:mod:`.interview`) or taking the answers as flags. `--zone FILE` answers from zone files before anything
else, so records can be tried before they are published.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from transport.core.commands import arguments, command
from transport.core.config import TransportConfig, load_config
from transport.core.errors import ConfigError
from transport.core.dns import DnsError, DnsResolver, record_text

from .interview import interview
from .lint import MAX_DNS_LOOKUPS, MAX_VOID_LOOKUPS, LintReport, RecordKind, RecordReport, TermReport, lint_domain
from .received_spf import EXCHANGE_STATUS
from .spf import SpfChecker, SpfResult
from .wizard import AllPolicy, Answers, Proposal, Survey, WizardError, propose, split_strings, survey

#: The zone lines' TTL: an hour, so a correction spreads within one.
ZONE_TTL = 3600


def _common(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: a -c given before the action (on `senderid`) must survive the action's parser.
    p.add_argument("-c", "--config", default=argparse.SUPPRESS, help="configuration file (default: transport.yaml)")
    p.add_argument("--zone", action="append", default=[], type=Path, help="a BIND zone file answered first (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _args(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = actions.add_parser("test", help="check an IP against a domain's records (Test-SenderId)")
    t.add_argument("--ip", required=True, help="the client IP address to check (IPv4 or IPv6)")
    who = t.add_mutually_exclusive_group(required=True)
    who.add_argument("--sender", help="the address to check (the PRA, or MAIL FROM for mfrom/spf); '' = HELO check")
    who.add_argument("--domain", help="the domain to check (Test-SenderId -PurportedResponsibleDomain)")
    t.add_argument("--helo", default="", help="the HELO/EHLO name (needed for a HELO check and the %%{h} macro)")
    t.add_argument("--scope", choices=["pra", "mfrom", "spf"], default="pra", help="record selection (default pra)")
    _common(t)
    t.set_defaults(run=_test)
    lookup = actions.add_parser("lookup", help="a domain's SPF and Sender ID records, expanded, counted and linted")
    lookup.add_argument("domain", help="the domain whose records to read")
    _common(lookup)
    lookup.set_defaults(run=_lookup)
    w = actions.add_parser("wizard", help="propose SPF (and Sender ID) records for a domain, proven before output",
                           description="Asks on a terminal; the flags give the same answers for scripts.")
    w.add_argument("domain", help="the domain to write records for")
    w.add_argument("--outbound-ip", action="append", default=[], metavar="IP[/LEN]",
                   help="an address or network that sends mail for the domain (repeatable)")
    w.add_argument("--outbound-host", action="append", default=[], metavar="HOST",
                   help="a server, by name, that sends mail for it: an MX host, the domain itself, any other (repeatable)")
    w.add_argument("--include", action="append", default=[], metavar="DOMAIN",
                   help="a provider that sends for it: the domain its instructions say to include: (repeatable)")
    w.add_argument("--no-mail", action="store_true", help="the domain sends no mail at all")
    w.add_argument("--all", choices=[p.value for p in AllPolicy], default=None,
                   help="what other servers get: fail (-all) or softfail (~all; the default unless --no-mail)")
    w.add_argument("--pra", action=argparse.BooleanOptionalAction, default=None,
                   help="also propose the Sender ID record (spf2.0/pra); default no")
    _common(w)
    w.set_defaults(run=_wizard)


async def check(resolver: DnsResolver, receiver: str, args: argparse.Namespace) -> SpfResult:
    checker = SpfChecker(resolver, receiver=receiver)
    if args.domain is not None:
        domain, sender = args.domain, f"postmaster@{args.domain}"
    else:
        sender = args.sender.strip("<>")
        if not sender:
            if not args.helo:
                raise ConfigError("--sender '' checks the HELO identity: give --helo NAME")
            return await checker.check_helo(args.ip, args.helo)
        domain = sender.rpartition("@")[2]
    if args.scope == "pra":
        return await checker.check_pra(args.ip, sender if args.domain is None else domain, args.helo)
    return await checker.check_host(args.ip, domain, sender, helo=args.helo, scope=args.scope)


def _config(path: str) -> TransportConfig:
    """The configuration's DNS settings when the file is there; plain defaults (system DNS) when not."""
    return load_config(path) if Path(path).exists() else TransportConfig()


@command("senderid", "test, lint and write a domain's Sender ID / SPF records (Test-SenderId, the SPF wizard)")
@arguments(_args)
def cmd_senderid(args: argparse.Namespace) -> int:
    config = _config(args.config)
    settings = config.dns.model_copy(update={"zone_files": [z.resolve() for z in args.zone] + config.dns.zone_files})
    try:
        resolver = DnsResolver(settings)
    except DnsError as e:
        raise ConfigError(str(e)) from None
    return args.run(resolver, config, args)


def _test(resolver: DnsResolver, config: TransportConfig, args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(check(resolver, config.receive.fqdn, args))
    except ValueError as e:  # an address that is not an IP
        raise ConfigError(f"--ip {args.ip}: {e}") from None
    queries = [{"name": q.name, "type": q.rdtype, "outcome": q.outcome,
                "records": [record_text(r) for r in (q.answer.records if q.answer else ())]} for q in result.queries]
    data = {"result": result.result, "status": EXCHANGE_STATUS[result.result], "fail_reason": result.fail_reason,
            "explanation": result.explanation, "domain": result.domain, "scope": result.scope,
            "record": result.record, "mechanism": result.mechanism, "problem": result.problem, "queries": queries}
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    status = data["status"] + (f" ({result.fail_reason})" if result.fail_reason else "")
    print(f"Result:      {status}")
    for label, key in (("Domain", "domain"), ("Scope", "scope"), ("Record", "record"), ("Mechanism", "mechanism"),
                       ("Explanation", "explanation"), ("Problem", "problem")):
        if data[key]:
            print(f"{label + ':':<12} {data[key]}")
    print(f"DNS queries: {len(queries)}")
    for q in queries:
        print(f"  {q['name']} {q['type']}: {q['outcome']}" + (f"  {'; '.join(q['records'])}" if q["records"] else ""))
    return 0


def _host_form(network: str) -> str:
    """``192.0.2.1/32`` as ``192.0.2.1``: a single address reads as an address."""
    return network.rsplit("/", 1)[0] if network.endswith(("/32", "/128")) else network


def _term_json(term: TermReport) -> dict[str, Any]:
    return {"term": term.text, "kind": term.kind, "target": term.target, "lookups": term.lookups, "void": term.void,
            "networks": list(term.networks), "hosts": list(term.hosts), "note": term.note,
            "record": _record_json(term.record) if term.record else None}


def _record_json(record: RecordReport) -> dict[str, Any]:
    return {"domain": record.domain, "kind": record.kind.value, "scopes": list(record.scopes), "text": record.text,
            "strings": list(record.strings), "valid": record.valid, "lookups": record.lookups,
            "void_lookups": record.void_lookups, "terms": [_term_json(t) for t in record.terms]}


def _lint_json(report: LintReport) -> dict[str, Any]:
    return {"domain": report.domain, "rcode": report.rcode, "records": [_record_json(r) for r in report.records],
            "limits": {"lookups": MAX_DNS_LOOKUPS, "void_lookups": MAX_VOID_LOOKUPS},
            "problems": [{"kind": p.kind.value, "severity": p.severity.value, "where": p.where, "message": p.message}
                         for p in report.problems]}


def _term_lines(terms: tuple[TermReport, ...], indent: str) -> list[str]:
    width = max((len(t.text) for t in terms), default=0)
    lines = []
    for term in terms:
        if term.hosts:
            what = "; ".join(term.hosts) + ": " + ", ".join(_host_form(n) for n in term.networks)
        elif term.record is not None:
            what = f"{term.record.text}   ({term.lookups} lookups)"
        else:
            what = ", ".join(_host_form(n) for n in term.networks)
        if term.note:
            what = f"{what} ({term.note})" if what else term.note
        lines.append(f"{indent}{term.text:<{width}}  {what}".rstrip())
        if term.record is not None:
            lines += _term_lines(term.record.terms, indent + "    ")
    return lines


def _record_lines(record: RecordReport) -> list[str]:
    head = "v=spf1 record" if record.kind is RecordKind.SPF else f"Sender ID record ({record.text.split(' ')[0]})"
    lines = [f"{head}, {len(record.text)} characters in {len(record.strings)} string(s):", f"  {record.text}"]
    lines += _term_lines(record.terms, "    ")
    lines.append(f"  DNS lookups: {record.lookups} of {MAX_DNS_LOOKUPS}; void lookups: {record.void_lookups} of "
                 f"{MAX_VOID_LOOKUPS} (worst case: a client that matches nothing and has no reverse DNS)")
    return lines


def _problem_lines(report: LintReport) -> list[str]:
    if not report.problems:
        return ["Problems: none"]
    lines = [f"Problems: {len(report.problems)} ({len(report.errors)} error(s))"]
    width = max(len(p.kind.value) for p in report.problems)
    lines += [f"  {p.severity.value:<7}  {p.kind.value:<{width}}  {p.where}: {p.message}" for p in report.problems]
    return lines


def _lookup(resolver: DnsResolver, config: TransportConfig, args: argparse.Namespace) -> int:
    report = asyncio.run(lint_domain(resolver, args.domain))
    if args.json:
        print(json.dumps(_lint_json(report), indent=2))
        return 0
    spf = [r for r in report.records if r.kind is RecordKind.SPF]
    print(f"{report.domain} TXT: {report.rcode}, {len(spf)} SPF record(s), "
          f"{len(report.records) - len(spf)} Sender ID record(s)")
    for record in report.records:
        print("\n".join(_record_lines(record)))
    if spf and len(spf) == len(report.records):
        print("Sender ID (spf2.0/pra): none published; Sender ID checks use the v=spf1 record")
    print("\n".join(_problem_lines(report)))
    return 0


def _answers(args: argparse.Namespace) -> Answers:
    return Answers(tuple(args.outbound_ip), tuple(args.outbound_host), tuple(args.include), args.no_mail,
                   AllPolicy(args.all) if args.all else None, bool(args.pra))


def _asking(args: argparse.Namespace) -> bool:
    """Ask on a terminal unless the answers came as flags (or the output is JSON for a script)."""
    given = args.outbound_ip or args.outbound_host or args.include or args.no_mail or args.all or args.pra is not None
    return not given and not args.json and sys.stdin.isatty()


def _survey_lines(found: Survey) -> list[str]:
    lines = [f"Survey of {found.domain}:"]
    lines += [f"  MX           {mx.preference} {mx.host} ({', '.join(mx.addresses) or 'no address'})" for mx in found.mx]
    lines.append(f"  Addresses    {', '.join(found.addresses) or 'none'}")
    current = found.current
    for record in current.records:
        lines.append(f"  Published    {record.text}")
    if current.problems:
        lines.append(f"               {len(current.errors)} error(s), {len(current.problems) - len(current.errors)} "
                     f"warning(s): `transport senderid lookup {found.domain}` lists them")
    elif not current.records:
        lines.append("  Published    no SPF or Sender ID record")
    return lines


def _quoted(text: str) -> str:
    return " ".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in split_strings(text))


def _wizard(resolver: DnsResolver, config: TransportConfig, args: argparse.Namespace) -> int:
    found = asyncio.run(survey(resolver, args.domain))
    if _asking(args):
        print("\n".join(_survey_lines(found)), flush=True)
        try:
            answers = interview(found)
        except EOFError:
            raise WizardError("the questions ended before they were answered (end of input)") from None
    else:
        answers = _answers(args)
    proposal = asyncio.run(propose(resolver, found, answers))
    if args.json:
        print(json.dumps(_proposal_json(found, answers, proposal), indent=2))
        return 0
    if not _asking(args):
        print("\n".join(_survey_lines(found)))
    print("\n".join(_proposal_lines(proposal, answers)))
    return 0


def _proposal_json(found: Survey, answers: Answers, proposal: Proposal) -> dict[str, Any]:
    domain = proposal.domain
    return {
        "domain": domain,
        "survey": {"mx": [{"preference": m.preference, "host": m.host, "addresses": list(m.addresses)}
                          for m in found.mx],
                   "addresses": list(found.addresses), "current": _lint_json(found.current)},
        "answers": {"outbound_ips": list(answers.outbound_ips), "outbound_hosts": list(answers.outbound_hosts),
                    "includes": list(answers.includes), "no_mail": answers.no_mail,
                    "all": answers.all_policy.value, "pra": answers.pra},
        "record": proposal.spf, "pra_record": proposal.pra, "lookups": proposal.lookups, "notes": list(proposal.notes),
        "checks": [{"ip": c.ip, "who": c.who, "scope": c.scope, "expected": c.expected, "result": c.result}
                   for c in proposal.checks],
        "lint": _lint_json(proposal.lint), "replaces": list(proposal.replaces),
        "bind": _bind_lines(proposal), "dnscmd": _dnscmd_lines(proposal),
    }


def _bind_lines(proposal: Proposal) -> list[str]:
    owner = proposal.domain + "."
    return ([f"; remove: {owner} IN TXT {_quoted(t)}" for t in proposal.replaces]
            + [f"{owner} {ZONE_TTL} IN TXT {_quoted(t)}" for t in proposal.records])


def _dnscmd_lines(proposal: Proposal) -> list[str]:
    zone = proposal.domain
    return ([f"dnscmd /recorddelete {zone} @ TXT {_quoted(t)} /f" for t in proposal.replaces]
            + [f"dnscmd /recordadd {zone} @ TXT {_quoted(t)}" for t in proposal.records])


def _proposal_lines(proposal: Proposal, answers: Answers) -> list[str]:
    spf = proposal.lint.record(RecordKind.SPF)
    voids = spf.void_lookups if spf else 0
    lines = [f"Proposed record ({proposal.lookups} DNS lookup(s) of {MAX_DNS_LOOKUPS}, {voids} void of "
             f"{MAX_VOID_LOOKUPS}):"]
    lines += [f"  {record}" for record in proposal.records]
    lines += [f"  note: {note}" for note in proposal.notes]
    lines.append("Proof (this project's Sender ID engine, against DNS as it will answer once published):")
    width = max(len(c.ip) for c in proposal.checks)
    lines += [f"  {c.result:<9} {c.ip:<{width}}  {c.scope:<4} {c.who}" for c in proposal.checks]
    warnings = [p for p in proposal.lint.problems if p not in proposal.lint.errors]
    lines.append("  lint: no errors" + "".join(f"; warning: {p.message}" for p in warnings))
    lines.append("BIND zone lines" + (" (delete the records published now):" if proposal.replaces else ":"))
    lines += [f"  {line}" for line in _bind_lines(proposal)]
    lines.append(f"Windows DNS: in DNS Manager open Forward Lookup Zones > {proposal.domain}, New Other Records…, "
                 "Text (TXT); leave Record name blank (the parent domain) and paste the text; or at a command prompt:")
    lines += [f"  {line}" for line in _dnscmd_lines(proposal)]
    lines.append(f"The same answers as flags: transport senderid wizard {proposal.domain} {' '.join(answers.as_flags())}")
    return lines
