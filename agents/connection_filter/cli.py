"""`transport connection-filter test --ip IP [--provider NAME] [--json]`: Exchange's Test-IPBlockListProvider,
extended to the IP Allow/Block lists and allow list providers of the configured Connection Filtering agent.

The lists and providers are those of the agent's `config:` in the configuration file; the DNS answers come from
the configuration's DNS settings (zone files first), so the demo's `bl.contoso-demo.test` answers offline.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json

from transport.core.commands import arguments, command, load
from transport.core.dns import DnsError, DnsResolver
from transport.core.errors import ConfigError

from .agent import ConnectionFilterConfig, ConnectionFilteringAgent
from .ip_list import first_hit
from .providers import ProviderAction, look_up_all

_CLASS = f"{ConnectionFilteringAgent.__module__.rsplit('.', 1)[0]}:{ConnectionFilteringAgent.__name__}"


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["test"], help="test: what the connection filter makes of an IP address")
    p.add_argument("--ip", required=True, help="the client IP address (IPv4 or IPv6)")
    p.add_argument("--provider", help="ask only this provider (its name)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _agent_config(config) -> ConnectionFilterConfig:
    for i, entry in enumerate(config.agents):
        if entry.cls in (_CLASS, f"{ConnectionFilteringAgent.__module__}:{ConnectionFilteringAgent.__name__}"):
            try:
                return ConnectionFilterConfig.model_validate(entry.config)
            except ValueError as e:
                raise ConfigError(f"{config.locate('agents', i, 'config')}: agents.{i}.config: {e}") from None
    raise ConfigError(f"{config.locate('agents')}: no {_CLASS} agent is configured")


@command("connection-filter", "test an IP against the IP lists and list providers (like Test-IPBlockListProvider)")
@arguments(_args)
def cmd_connection_filter(args: argparse.Namespace) -> int:
    config = load(args)
    cfg = _agent_config(config)
    try:
        ip = ipaddress.ip_address(args.ip)
    except ValueError:
        raise ConfigError(f"--ip {args.ip}: not an IPv4 or IPv6 address") from None
    providers = [("allow", p) for p in cfg.allow_list_providers] + [("block", p) for p in cfg.block_list_providers]
    if args.provider is not None:
        providers = [(k, p) for k, p in providers if p.name.lower() == args.provider.lower()]
        if not providers:
            known = ", ".join(p.name for p in cfg.allow_list_providers + cfg.block_list_providers) or "none configured"
            raise ConfigError(f"--provider {args.provider}: no such provider ({known})")
    try:
        resolver = DnsResolver(config.dns)
    except DnsError as e:
        raise ConfigError(str(e)) from None
    kinds = {id(p): k for k, p in providers}
    results = asyncio.run(look_up_all(resolver, [p for _, p in providers], ip))
    allow, block = first_hit(cfg.ip_allow_list, ip), first_hit(cfg.ip_block_list, ip)
    rows = [{"provider": r.provider.name, "kind": kinds[id(r.provider)], "lookup_domain": r.provider.lookup_domain,
             "query": r.name, "outcome": r.outcome, "answers": list(r.answers), "match": r.provider.match.value,
             "listed": r.listed, "action": r.provider.action.value if kinds[id(r.provider)] == "block" else None,
             "rejection": r.provider.rejection(ip) if r.listed and kinds[id(r.provider)] == "block"
             and r.provider.action is ProviderAction.REJECT else ""}
            for r in results]
    data = {"ip": str(ip), "ip_allow_list": allow.ip_range if allow else None,
            "ip_block_list": block.ip_range if block and not allow else None, "providers": rows}
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"IP Allow list: {'listed (' + data['ip_allow_list'] + ')' if allow else 'not listed'}")
    print(f"IP Block list: {'listed (' + data['ip_block_list'] + ')' if data['ip_block_list'] else 'not listed'}")
    for row in rows:
        state = {True: "listed", False: "not listed", None: "unknown (no answer)"}[row["listed"]]
        answers = f" {', '.join(row['answers'])}" if row["answers"] else ""
        print(f"{row['kind'].title()} list provider {row['provider']}: {state}")
        print(f"  {row['query']} A: {row['outcome']}{answers}  ({row['match']})")
        if row["rejection"]:
            print(f"  reply at RCPT: 550 5.7.1 {row['rejection']}")
        elif row["listed"] and row["action"] == ProviderAction.STAMP_STATUS.value:
            print("  StampStatus: no rejection; the content filter's dns_block_list rule adds its weight")
    return 0
