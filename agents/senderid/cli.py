"""`transport senderid test`: Exchange's Test-SenderId, with every DNS query shown.

Scopes: `pra` (Sender ID for a purported responsible address: `spf2.0/pra` records first, then `v=spf1`),
`mfrom` (Sender ID's MAIL FROM scope) and `spf` (plain RFC 7208, `v=spf1` only). `--sender ''` checks the HELO
identity, as RFC 7208 does for a null reverse path. `--zone FILE` answers from zone files before anything else,
so records can be tried before they are published.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from transport.core.commands import arguments, command
from transport.core.config import TransportConfig, load_config
from transport.core.errors import ConfigError
from transport.core.dns import DnsError, DnsResolver

from .received_spf import EXCHANGE_STATUS
from .spf import SpfChecker, SpfResult


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["test"], help="test: check an IP against a domain's records (Test-SenderId)")
    p.add_argument("--ip", required=True, help="the client IP address to check (IPv4 or IPv6)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--sender", help="the address to check (the PRA, or MAIL FROM for mfrom/spf); '' = HELO check")
    who.add_argument("--domain", help="the domain to check (Test-SenderId -PurportedResponsibleDomain)")
    p.add_argument("--helo", default="", help="the HELO/EHLO name (needed for a HELO check and the %%{h} macro)")
    p.add_argument("--scope", choices=["pra", "mfrom", "spf"], default="pra", help="record selection (default pra)")
    p.add_argument("--zone", action="append", default=[], type=Path, help="a BIND zone file answered first (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


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


@command("senderid", "test a domain's Sender ID / SPF records (like Test-SenderId)")
@arguments(_args)
def cmd_senderid(args: argparse.Namespace) -> int:
    config = _config(args.config)
    settings = config.dns.model_copy(update={"zone_files": [z.resolve() for z in args.zone] + config.dns.zone_files})
    try:
        resolver = DnsResolver(settings)
    except DnsError as e:
        raise ConfigError(str(e)) from None
    try:
        result = asyncio.run(check(resolver, config.receive.fqdn, args))
    except ValueError as e:  # an address that is not an IP
        raise ConfigError(f"--ip {args.ip}: {e}") from None
    queries = [{"name": q.name, "type": q.rdtype, "outcome": q.outcome,
                "records": [_show(r) for r in (q.answer.records if q.answer else ())]} for q in result.queries]
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


def _show(record: object) -> str:
    if isinstance(record, tuple) and record and isinstance(record[0], bytes):
        return "".join(part.decode("utf-8", "replace") for part in record)
    if isinstance(record, tuple):
        return " ".join(str(p) for p in record)
    return str(record)
