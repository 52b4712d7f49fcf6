"""`transport content-filter test FILE.eml [--ip IP] [--helo NAME] [--json]`: what the content filter makes of a file.

The message is played, as if it came from `--ip` (default 127.0.0.1, this machine) with that HELO name, to the
other receive agents of the configuration (so Sender ID, the sender filter and reverse DNS leave the stamps the
rules read), then scored by the configured content filter. Organisation headers in the file are dropped first, as
the header firewall drops them from an anonymous sender.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path

from agents import (ORGANIZATION_HEADER_PREFIX, AgentContext, EhloEvent, EndOfDataEvent, EndOfHeadersEvent, MailItem,
                    Recipient, SessionInfo)
from transport.core.commands import arguments, command, load
from transport.core.config import AgentEntry, TransportConfig
from transport.core.counters import Counters
from transport.core.dns import DnsError, DnsResolver
from transport.core.errors import AgentLoadError, ConfigError, TransportError
from transport.core.headers import not_a_message
from transport.core.pipeline import load_agent, load_pipeline, resolve_class

from .agent import ContentAction, ContentFilterAgent
from .message import first_address
from .scan import Scan


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["test"], help="test: score a message file and show every rule that fired")
    p.add_argument("file", type=Path, help="the message (.eml)")
    p.add_argument("--ip", default="127.0.0.1", help="the client IP it comes from (default 127.0.0.1)")
    p.add_argument("--helo", default="", help="the client's HELO name (reverse DNS compares it; default: no HELO check)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _is_content_filter(entry: AgentEntry) -> bool:
    try:
        return entry.enabled and issubclass(resolve_class(entry.cls), ContentFilterAgent)
    except AgentLoadError:
        return False


async def _run(config: TransportConfig, raw: bytes, ip: str, helo: str) -> tuple[Scan, str, str]:
    """The scan, where the message would go, and which agent ended it before the content filter ('' if none)."""
    try:
        context = AgentContext(config, DnsResolver(config.dns), Counters(), logging.getLogger("transport"))
    except DnsError as e:
        raise ConfigError(str(e)) from None
    entries = config.agents
    mine = next((i for i, e in enumerate(entries) if _is_content_filter(e)), None)
    if mine is None:
        raise ConfigError(f"{config.locate('agents')}: no content filter agent is configured "
                          "(agents.content_filter:ContentFilterAgent)")
    agent = load_agent(mine, entries[mine], context).agent
    assert isinstance(agent, ContentFilterAgent)
    others = load_pipeline([e for e in entries if e.enabled and not _is_content_filter(e)], context)
    session = SessionInfo(session_id="content-filter-test", client_ip=ip, helo=helo, esmtp=True)
    item = MailItem("", [], raw, session=session)
    item.remove_headers([ORGANIZATION_HEADER_PREFIX], prefix=True)
    item.sender = first_address(item, "From")[1]
    item.recipients = [Recipient(a) for a in _to(item)]
    ended = ""
    if helo:
        await others.run(EhloEvent(session, helo))
    for event_cls in (EndOfHeadersEvent, EndOfDataEvent):
        event = await others.run(event_cls(session, item))
        if event.acted:
            ended = f"{event.decided_by}: {event.action.value} {event.response or ''}".strip()
            break
    result = agent.scan(item)
    action = agent.action(result.scl)
    if action is ContentAction.ACCEPT:
        junk = result.scl > config.organization.scl_junk_threshold
        where = f"{'Junk' if junk else 'Inbox'} (SCLJunkThreshold {config.organization.scl_junk_threshold})"
    else:
        where = f"{action.value}" + (f" ({agent.rejection})" if action is ContentAction.REJECT else "")
    return result, where, ended


def _to(item: MailItem) -> list[str]:
    return [a for a in (first_address(item, n)[1] for n in ("To", "Cc")) if a]


@command("content-filter", "score a message with the content filter's rules and show why (SCL and every rule)")
@arguments(_args)
def cmd_content_filter(args: argparse.Namespace) -> int:
    config = load(args)
    try:
        raw = args.file.read_bytes()
    except OSError as e:
        raise ConfigError(f"{args.file}: {e.strerror}") from None
    problem = not_a_message(raw)
    if problem:
        raise TransportError(f"{args.file}: {problem}")
    result, where, ended = asyncio.run(_run(config, raw, args.ip, args.helo))
    data = result.as_dict() | {"lands": where, "ended_by_other_agent": ended or None}
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"SCL {result.scl} (score {result.score:g})")
    for hit in result.hits:
        print(f"  {hit}")
    if not result.hits:
        print("  no rule fired")
    print(f"lands: {where}")
    if ended:
        print(f"but before the content filter: {ended}")
    return 0
