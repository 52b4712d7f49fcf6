"""`transport content-filter test FILE.eml [--ip IP] [--helo NAME] [--json]`: what the content filter makes of a file;
`transport content-filter train --ham DIR --spam DIR [--reset] [--json]`: teach the Bayes classifier.

`test` plays the message, as if it came from `--ip` (default 127.0.0.1, this machine) with that HELO name, to the
other receive agents of the configuration (so Sender ID, the sender filter and reverse DNS leave the stamps the
rules read), then scores it with the configured content filter. Organisation headers in the file are dropped
first, as the header firewall drops them from an anonymous sender.

`train` reads Maildir folders (their `cur/` and `new/`) or folders of `.eml` files and adds what it learns to the
classifier's database under the data root (`bayes_database`); a running hub reads it when it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sqlite3
import sys
from pathlib import Path

from pydantic import ValidationError
from tqdm import tqdm

from agents import (ORGANIZATION_HEADER_PREFIX, AgentContext, EhloEvent, EndOfDataEvent, EndOfHeadersEvent, MailItem,
                    Recipient, SessionInfo)
from transport.core.commands import arguments, command, load
from transport.core.config import AgentEntry, TransportConfig
from transport.core.counters import Counters
from transport.core.dns import DnsError, DnsResolver
from transport.core.errors import AgentLoadError, ConfigError, TransportError
from transport.core.headers import not_a_message
from transport.core.pipeline import load_agent, load_pipeline, resolve_class
from transport.core.scl import SclAction

from .agent import ContentFilterAgent
from .bayes import Classifier, tokens
from .config import ContentFilterConfig
from .message import MessageView, first_address
from .scan import Scan


def _common(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: a -c given before the action (on `content-filter`) must survive the action's parser.
    p.add_argument("-c", "--config", default=argparse.SUPPRESS, help="configuration file (default: transport.yaml)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _args(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = actions.add_parser("test", help="score a message file and show every rule that fired")
    t.add_argument("file", type=Path, help="the message (.eml)")
    t.add_argument("--ip", default="127.0.0.1", help="the client IP it comes from (default 127.0.0.1)")
    t.add_argument("--helo", default="", help="the client's HELO name (reverse DNS compares it; default: no HELO check)")
    _common(t)
    t.set_defaults(run=_test)
    tr = actions.add_parser("train", help="teach the Bayes classifier from folders of ham and spam",
                            description="Each DIR is a Maildir folder (its cur/ and new/) or a folder of .eml files.")
    tr.add_argument("--ham", action="append", default=[], type=Path, metavar="DIR", help="good mail (repeatable)")
    tr.add_argument("--spam", action="append", default=[], type=Path, metavar="DIR", help="spam (repeatable)")
    tr.add_argument("--reset", action="store_true", help="forget what was learnt before")
    _common(tr)
    tr.set_defaults(run=_train)


def _is_content_filter(entry: AgentEntry) -> bool:
    try:
        return entry.enabled and issubclass(resolve_class(entry.cls), ContentFilterAgent)
    except AgentLoadError:
        return False


def _content_filter_entry(config: TransportConfig) -> int:
    """The index of the enabled content filter among the configuration's agents; ConfigError when there is none."""
    mine = next((i for i, e in enumerate(config.agents) if _is_content_filter(e)), None)
    if mine is None:
        raise ConfigError(f"{config.locate('agents')}: no content filter agent is configured "
                          "(agents.content_filter:ContentFilterAgent)")
    return mine


async def _run(config: TransportConfig, raw: bytes, ip: str, helo: str) -> tuple[Scan, str, str]:
    """The scan, where the message would go, and which agent ended it before the content filter ('' if none)."""
    try:
        context = AgentContext(config, DnsResolver(config.dns), Counters(), logging.getLogger("transport"))
    except DnsError as e:
        raise ConfigError(str(e)) from None
    entries = config.agents
    mine = _content_filter_entry(config)
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
    address = item.recipients[0].address if item.recipients else ""
    action = agent.action(result.scl, address)
    thresholds = agent.thresholds.for_mailbox(config.mailbox(address))
    where = {SclAction.INBOX: f"Inbox (SCLJunkThreshold {thresholds.junk_threshold})",
             SclAction.JUNK: f"Junk (SCLJunkThreshold {thresholds.junk_threshold})",
             SclAction.REJECT: f"Reject ({agent.rejection})", SclAction.DELETE: "Delete",
             SclAction.QUARANTINE: f"Quarantine ({thresholds.quarantine_mailbox})"}[action]
    return result, where, ended


def _to(item: MailItem) -> list[str]:
    return [a for a in (first_address(item, n)[1] for n in ("To", "Cc")) if a]


@command("content-filter", "score a message with the content filter's rules and show why; train its Bayes classifier")
@arguments(_args)
def cmd_content_filter(args: argparse.Namespace) -> int:
    return args.run(args)


def _test(args: argparse.Namespace) -> int:
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
    print(f"SCL {result.scl} (score {result.score:g}), PCL {result.pcl}")
    for hit in result.hits:
        print(f"  {hit}")
    if not result.hits:
        print("  no rule fired")
    print(f"lands: {where}")
    if ended:
        print(f"but before the content filter: {ended}")
    return 0


def message_files(folder: Path) -> list[Path]:
    """A Maildir's messages (cur/ and new/), or the .eml files of a folder; TransportError when it is neither."""
    if not folder.is_dir():
        raise TransportError(f"{folder}: not a folder")
    if (folder / "cur").is_dir() or (folder / "new").is_dir():
        return sorted(p for sub in ("cur", "new") if (folder / sub).is_dir() for p in (folder / sub).iterdir() if p.is_file())
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".eml")


def _filter_config(config: TransportConfig) -> ContentFilterConfig:
    index = _content_filter_entry(config)
    try:
        return ContentFilterConfig.model_validate(config.agents[index].config, context={"transport": config})
    except ValidationError as e:
        raise ConfigError(f"{config.locate('agents', index, 'config')}: agents.{index}.config: "
                          f"{e.errors()[0]['msg'].removeprefix('Value error, ')}") from None


def _train(args: argparse.Namespace) -> int:
    config = load(args)
    if not args.ham and not args.spam:
        raise TransportError("give at least one --ham or --spam folder")
    path = config.data_root / _filter_config(config).bayes_database
    try:
        classifier = Classifier(path, read=not args.reset)
    except sqlite3.DatabaseError as e:
        raise TransportError(f"{path}: not a Bayes database ({e}); use --reset to start a new one") from None
    work = [(f, False) for d in args.ham for f in message_files(d)] + [(f, True) for d in args.spam for f in message_files(d)]
    learnt, skipped = {False: 0, True: 0}, []
    for file, spam in tqdm(work, desc="training", unit="msg", file=sys.stderr, disable=None):
        try:
            raw = file.read_bytes()
        except OSError as e:
            skipped.append(f"{file}: {e.strerror}")
            continue
        problem = not_a_message(raw)
        if problem:
            skipped.append(f"{file}: {problem}")
            continue
        classifier.learn(tokens(MessageView.of(MailItem("", [], raw), raw)), spam)
        learnt[spam] += 1
    classifier.save()
    summary = {"ham": learnt[False], "spam": learnt[True], "skipped": skipped, "database": str(path),
               "total_ham": classifier.ham, "total_spam": classifier.spam, "tokens": len(classifier.counts)}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    print(f"learnt {learnt[False]} ham and {learnt[True]} spam ({len(skipped)} skipped); the classifier now knows "
          f"{classifier.ham} ham, {classifier.spam} spam and {len(classifier.counts)} tokens: {path}")
    return 0
