"""`transport trace FILE.eml` and `transport content-filter test FILE.eml`: both print a `transport.trace` run.

`trace` shows everything (event by event, agent by agent, the DNS queries, the SCL and its rules, the
disposition per recipient); `content-filter test` shows the content filter's part of the same run (its SCL,
rules and where the message lands), so there is one simulated session behind both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from .core.commands import arguments, command, load
from .core.config import TransportConfig
from .core.errors import AgentLoadError, BadFileError, ConfigError, TransportError
from .core.pipeline import resolve_class
from .trace import Disposition, Trace, trace_message

__all__ = ["cmd_trace", "cmd_content_filter", "render"]


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise TransportError(f"{path}: {e.strerror}") from None


def _run(config: TransportConfig, path: str, **kw: Any) -> Trace:
    try:
        return asyncio.run(trace_message(config, _read(path), **kw))
    except BadFileError as e:
        raise TransportError(f"{'standard input' if path == '-' else path}: {e}") from None


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", default="-", help="the message (.eml); - or nothing: standard input")
    p.add_argument("--ip", default="127.0.0.1", help="the client IP of the simulated session (default 127.0.0.1)")
    p.add_argument("--helo", default="", help="its HELO name (default: none, so the HELO is not judged)")
    p.add_argument("--mail-from", help="the envelope sender (default: the From header's address)")
    p.add_argument("--rcpt", action="append", default=[], help="an envelope recipient (repeat; default: To and Cc)")
    p.add_argument("--connector", help="the receive connector that takes the session (default: the first)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


@command("trace", "dry-run the configured pipeline on one message and explain every step (nothing is queued)")
@arguments(_args)
def cmd_trace(args: argparse.Namespace) -> int:
    trace = _run(load(args), args.file, client_ip=args.ip, helo=args.helo, mail_from=args.mail_from,
                 recipients=args.rcpt, connector=args.connector)
    if args.json:
        print(json.dumps(trace.to_json(), indent=2))
    else:
        print(render(trace))
    return 0


def _where(d: dict[str, Any]) -> str:
    where = Disposition(d["where"])
    if where in (Disposition.INBOX, Disposition.JUNK, Disposition.QUARANTINE):
        return f"{where.value} (folder {d['folder']}; SCLJunkThreshold {d['junk_threshold']})"
    detail = d.get("reply") or d.get("next_hop")
    by = f" by {d['by']}" if d.get("by") else ""
    return f"{where.value}{by}" + (f": {detail}" if detail else "")


def render(trace: Trace) -> str:
    """The trace for a reader: steps grouped by event, then DNS, SCL and rules, then the disposition."""
    s = trace.session
    lines = [f"Message {trace.message_id or '(no Message-ID)'} from {trace.sender or '<>'}: client {s.client_ip}"
             f"{f' (HELO {s.helo})' if s.helo else ''} on receive connector {trace.connector}"]
    event = ""
    width = max([len(st.agent) for st in trace.steps] + [0])
    for st in trace.steps:
        if st.event != event:
            event = st.event
            lines.append(event)
        what = "error: " + st.error if st.error else (
            f"{st.action} {st.response}".strip() if st.action != "None" else ("stamped" if st.stamps or st.reason else "-"))
        lines.append(f"  {st.agent.ljust(width)}  {what}" + (f" ({st.reason})" if st.reason else ""))
        lines += [f"      {stamp}" for stamp in st.stamps]
    lines.append(f"DNS queries: {len(trace.dns)}")
    for q in trace.dns:
        answers = "  " + " | ".join(q.answers) if q.answers else ""
        lines.append(f"  {q.name} {q.rdtype}: {q.outcome}{answers}  ({q.ms:.1f} ms, {q.agent} at {q.event})")
    score = f" (score {trace.score:g})" if trace.score is not None else ""
    lines.append(f"SCL {trace.scl if trace.scl is not None else 'none'}{score}")
    lines += [f"  {_rule(r)}" for r in trace.rules]
    lines.append("Disposition:")
    width = max(len(a) for a in trace.disposition) if trace.disposition else 0
    lines += [f"  {a.ljust(width)}  {_where(d)}" for a, d in trace.disposition.items()]
    return "\n".join(lines)


def _rule(r: dict[str, Any]) -> str:
    effect = f"SCL {r['forces_scl']}" if r.get("forces_scl") is not None else (
        f"{r['weight']:+g}" if r.get("weight") is not None else "")
    return f"{r['name']} {effect} ({r['description']})".replace("  ", " ")


# -- content-filter test -----------------------------------------------------------------------------------
def _cf_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["test"], help="test: score a message file and show every rule that fired")
    p.add_argument("file", help="the message (.eml); - for standard input")
    p.add_argument("--ip", default="127.0.0.1", help="the client IP it comes from (default 127.0.0.1)")
    p.add_argument("--helo", default="", help="the client's HELO name (reverse DNS compares it; default: no HELO check)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _has_content_filter(config: TransportConfig) -> bool:
    for entry in config.agents:
        try:
            if entry.enabled and resolve_class(entry.cls).__module__.startswith("agents.content_filter"):
                return True
        except AgentLoadError:
            continue
    return False


@command("content-filter", "score a message with the content filter's rules and show why (SCL and every rule)")
@arguments(_cf_args)
def cmd_content_filter(args: argparse.Namespace) -> int:
    config = load(args)
    if not _has_content_filter(config):
        raise ConfigError(f"{config.locate('agents')}: no content filter agent is configured "
                          "(agents.content_filter:ContentFilterAgent)")
    trace = _run(config, args.file, client_ip=args.ip, helo=args.helo)
    first = next(iter(trace.disposition.values()))
    where = Disposition(first["where"])
    if where in (Disposition.INBOX, Disposition.JUNK, Disposition.QUARANTINE):
        lands = f"{where.value} (SCLJunkThreshold {first['junk_threshold']})"
    elif where is Disposition.REJECTED:
        lands = f"Reject ({first['reply']})"
    else:
        lands = "Delete" if where is Disposition.DELETED else where.value
    ended = f"{first.get('by')}: {lands}" if trace.score is None and where in (Disposition.REJECTED, Disposition.DELETED) else ""
    if args.json:
        print(json.dumps({"scl": trace.scl, "score": trace.score, "rules": trace.rules, "lands": lands,
                          "ended_by_other_agent": ended or None}, indent=2))
        return 0
    print(f"SCL {trace.scl} (score {trace.score:g})" if trace.score is not None else f"SCL {trace.scl} (not scanned)")
    print("\n".join(f"  {_rule(r)}" for r in trace.rules) or "  no rule fired")
    print(f"lands: {lands}")
    if ended:
        print(f"but before the content filter: {ended}")
    return 0
