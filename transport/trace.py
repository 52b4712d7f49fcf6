"""`transport trace`: a dry run of the whole configured pipeline on one message, explained step by step.

Nothing here re-implements a decision. The message is played to the configured agents as the SMTP session that
would carry it (`pickup.session.SimulatedSession`: connect, EHLO, MAIL FROM, RCPT TO, DATA), with the receive
connector's own permission checks (`transport.permissions`); then the submission path's steps (header firewall,
trace stamps, end of headers, end of data: `transport.submission.SubmissionSteps`), the categorizer's routing
events, resolution and routing (`transport.categorizer.resolve` / `route`), and the mailbox folder choice
(`MailboxStore.folder_for`, the SCL junk threshold). A pipeline observer records what each agent decided and
stamped, and a wrapper around the configuration's DNS resolver records every query, its answer and its time.
Nothing is queued, delivered or written to the logs.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass, field, fields, replace
from typing import Any, Sequence

from queues.store import UNREACHABLE

from pickup.session import SimulatedSession

from .categorizer import resolve, route
from .core.agent import AgentContext
from .core.config import PermissionGroup, ReceiveConnector, TransportConfig, parse_binding
from .core.counters import Counters
from .core.dns import DnsAnswer, DnsError, DnsResolver, DnsTempError, record_text
from .core.errors import AgentLoadError, BadFileError, ConfigError, TransportError
from .core.events import (Action, CategorizedEvent, Event, ReceiveEvent, ResolvedEvent, RoutedEvent, RoutingEvent,
                          SubmittedEvent)
from .core.headers import addresses, decode_value, not_a_message
from .core.mailitem import MailItem, Recipient, RecipientStatus, SessionInfo, Stamp
from .core.pipeline import LoadedAgent, Pipeline, load_pipeline
from .core.tracking import TrackingLog
from .delivery.mailbox import JUNK_FOLDER, MAILBOX_QUEUE, MailboxStore
from .permissions import relay_refusal, submit_refusal
from .routing import RoutingTable
from .submission import SubmissionSteps

__all__ = ["Disposition", "DnsLookup", "Step", "Trace", "trace_message"]


class Disposition(str, enum.Enum):
    """Where a recipient's copy would end up."""

    INBOX = "Inbox"
    JUNK = "Junk"
    QUARANTINE = "Quarantine"
    REJECTED = "Rejected"    # refused in the SMTP session (the client gets the reply)
    DELETED = "Deleted"      # accepted and silently dropped by an agent
    FAILED = "Failed"        # accepted, then failed by the categorizer (an NDR)
    DEFERRED = "Deferred"    # a routing agent would hold it for later
    RELAYED = "Relayed"      # to a next hop other than a mailbox here
    UNREACHABLE = "Unreachable"


@dataclass(slots=True)
class DnsLookup:
    """One query an agent made: what it asked, what came back, how long it took, who asked."""

    name: str
    rdtype: str
    outcome: str
    answers: list[str]
    ms: float
    agent: str
    event: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.rdtype, "outcome": self.outcome, "answers": self.answers,
                "ms": round(self.ms, 3), "agent": self.agent, "event": self.event}


class RecordingResolver:
    """The configuration's resolver, seen: agents get its answers unchanged, the trace gets each lookup."""

    def __init__(self, inner: DnsResolver) -> None:
        self.inner = inner
        self.lookups: list[DnsLookup] = []
        self.asking = ("", "")  # (agent, event) whose hook is running

    async def lookup(self, name: str, rdtype: str) -> DnsAnswer:
        start = time.perf_counter()
        try:
            answer = await self.inner.lookup(name, rdtype)
        except DnsError as e:
            outcome = f"TEMPERROR ({e.reason})" if isinstance(e, DnsTempError) else f"ERROR ({e})"
            self._add(name, rdtype, outcome, [], start)
            raise
        outcome = answer.rcode if answer.rcode != "NOERROR" else f"NOERROR ({len(answer.records)})"
        self._add(name, rdtype, outcome, [record_text(r) for r in answer.records], start)
        return answer

    def _add(self, name: str, rdtype: str, outcome: str, answers: list[str], start: float) -> None:
        self.lookups.append(DnsLookup(name.rstrip(".").lower(), rdtype.upper(), outcome, answers,
                                      (time.perf_counter() - start) * 1000, *self.asking))

    def __getattr__(self, name: str) -> Any:  # settings, counts: whatever else agents read of the resolver
        return getattr(self.inner, name)


@dataclass(slots=True)
class Step:
    """One agent's hook on one event: what it decided, and what it left on the message or the session."""

    event: str
    agent: str
    action: str = Action.NONE.value
    response: str = ""
    reason: str = ""
    stamps: list[str] = field(default_factory=list)
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"event": self.event, "agent": self.agent, "action": self.action, "response": self.response or None,
                "reason": self.reason or None, "stamps": self.stamps, "error": self.error or None}


_SESSION_FACTS = tuple(f.name for f in fields(SessionInfo) if f.name not in ("session_id",))


class Tracer:
    """The pipeline observer: a Step per hook, with what changed on the mail item and the session."""

    def __init__(self, resolver: RecordingResolver) -> None:
        self.resolver = resolver
        self.steps: list[Step] = []
        self.scl_by: Step | None = None
        self._before: tuple[Any, ...] = ()

    @staticmethod
    def _state(event: Event) -> tuple[Any, ...]:
        item: MailItem | None = getattr(event, "mail_item", None)
        session = event.session if isinstance(event, ReceiveEvent) else None
        facts = tuple(getattr(session, f) for f in _SESSION_FACTS) if session is not None else ()
        if item is None:
            return facts, None, None, None, 0
        return facts, [(h.name, h.value) for h in item.headers], dict(item.stamps), item.scl, len(item.verdicts)

    def before(self, agent: LoadedAgent, event: Event) -> None:
        self.resolver.asking = (agent.name, event.exchange_name)
        self._before = self._state(event)

    def after(self, agent: LoadedAgent, event: Event, error: Exception | None) -> None:
        self.resolver.asking = ("", "")
        facts, headers, stamps, scl, verdicts = self._before
        step = Step(event.exchange_name, agent.name)
        if error is not None:
            step.error = f"{type(error).__name__}: {error}".splitlines()[0]
        if event.acted and event.decided_by == agent.name:
            step.action, step.response, step.reason = event.action.value, str(event.response or ""), event.reason
        session = event.session if isinstance(event, ReceiveEvent) else None
        if session is not None:
            step.stamps += [f"session {f}: {getattr(session, f)!r}" for f, old in zip(_SESSION_FACTS, facts)
                            if getattr(session, f) != old]
        item: MailItem | None = getattr(event, "mail_item", None)
        if item is not None:
            added = [(h.name, h.value) for h in item.headers]
            step.stamps += [f"{name}: {value}" for name, value in added if (name, value) not in headers]
            step.stamps += [f"stamp {getattr(k, 'value', k)}: {v!r}" for k, v in item.stamps.items()
                            if stamps.get(k) != v and k != Stamp.SCL_RULES]
            new = item.verdicts[verdicts:]
            if not step.reason and new:
                step.reason = "; ".join(v.reason for v in new if v.reason)
            if item.scl != scl:
                self.scl_by = step
        self.steps.append(step)


@dataclass
class Trace:
    """What the pipeline would do with the message (see `to_json` for the shape scripts read)."""

    message_id: str
    sender: str
    session: SessionInfo
    connector: str
    steps: list[Step]
    dns: list[DnsLookup]
    scl: int | None
    score: float | None
    pcl: int | None
    rules: list[dict[str, Any]]
    disposition: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        s = self.session
        return {"message_id": self.message_id, "sender": self.sender,
                "session": {"client_ip": s.client_ip, "helo": s.helo, "connector": self.connector},
                "steps": [st.to_json() for st in self.steps], "dns": [d.to_json() for d in self.dns],
                "scl": self.scl, "score": self.score, "pcl": self.pcl, "rules": self.rules,
                "disposition": {a: {k: (v.value if isinstance(v, Disposition) else v) for k, v in d.items()}
                                for a, d in self.disposition.items()}}


def _addresses(item: MailItem, *names: str) -> list[str]:
    values = [decode_value(v) for n in names for v in item.header_values(n)]
    return [a for _, a in addresses(values) if "@" in a]


def _connector(config: TransportConfig, name: str | None) -> ReceiveConnector:
    if name is None:
        return config.receive_connectors[0]
    for rc in config.receive_connectors:
        if rc.name.lower() == name.lower():
            return rc
    known = ", ".join(repr(rc.name) for rc in config.receive_connectors)
    raise TransportError(f"there is no receive connector {name!r} (connectors: {known})")


def _pipeline(config: TransportConfig, resolver: RecordingResolver) -> Pipeline:
    context = AgentContext(config, resolver, Counters(), logging.getLogger("transport.trace"))  # type: ignore[arg-type]
    try:
        return load_pipeline(config.agents, context)
    except AgentLoadError as e:
        raise ConfigError(f"{config.locate(*e.path)}: {e}") from None


def _rules(item: MailItem, tracer: Tracer) -> tuple[float | None, int | None, list[dict[str, Any]]]:
    """The score, the PCL and the rules that made the SCL: the content filter's, else the one agent step that set
    it."""
    scan = item.stamps.get(Stamp.SCL_RULES)
    if isinstance(scan, dict):
        return scan.get("score"), scan.get("pcl"), [
            {"name": r["name"], "weight": r["weight"], "description": r.get("detail", ""),
             "forces_scl": r.get("forces_scl"), "phishing": r.get("phishing", False)} for r in scan.get("rules", [])]
    if tracer.scl_by is not None and item.scl is not None:
        by = tracer.scl_by
        return None, None, [{"name": by.agent, "weight": None, "description": by.reason or f"set SCL {item.scl}",
                             "forces_scl": item.scl, "phishing": False}]
    return None, None, []


async def trace_message(config: TransportConfig, raw: bytes, *, client_ip: str = "127.0.0.1", helo: str = "",
                        mail_from: str | None = None, recipients: Sequence[str] = (),
                        connector: str | None = None) -> Trace:
    """Run the configured receive agents, the categorizer and routing on one message, queuing nothing.

    `mail_from` defaults to the From header's address and `recipients` to To and Cc. Raises BadFileError for
    bytes that are not a message, ConfigError for a configuration whose agents or zone files will not load.
    """
    problem = not_a_message(raw)
    if problem:
        raise BadFileError(problem)
    try:
        resolver = RecordingResolver(DnsResolver(config.dns))
    except DnsError as e:
        raise ConfigError(f"{config.locate('dns', 'zone_files')}: dns.zone_files: {e}") from None
    rc = _connector(config, connector)
    pipeline = _pipeline(config, resolver)
    tracer = Tracer(resolver)
    pipeline.observer = tracer
    steps = SubmissionSteps(config, pipeline, TrackingLog(config.data_root, rc.fqdn, enabled=False))
    server_ip = parse_binding(rc.bindings[0])[0] if rc.bindings else "127.0.0.1"
    session = SessionInfo(session_id="trace", client_ip=client_ip, server_ip=server_ip, helo=helo, esmtp=True,
                          connector=rc.name, antispam_bypass=rc.grants(PermissionGroup.EXCHANGE_SERVERS),
                          internal=steps.is_internal(client_ip))
    item = MailItem("", [], raw, session=session)
    item.sender = mail_from if mail_from is not None else next(iter(_addresses(item, "From")), "")
    item.recipients = [Recipient(a) for a in (recipients or _addresses(item, "To", "Cc"))]
    if not item.recipients:
        raise BadFileError("there are no recipients: give --rcpt, or To or Cc in the message")
    disposition: dict[str, dict[str, Any]] = {}
    await pipeline.start()
    try:
        ended = await _session(config, rc, steps, item, tracer, disposition)
        if not ended:
            await _categorize(config, pipeline, item, disposition)
    finally:
        await pipeline.stop()
    score, pcl, rules = _rules(item, tracer)
    return Trace(item.message_id, item.sender, replace(session), rc.name, tracer.steps, resolver.lookups,
                 item.scl, score, pcl, rules, disposition)


def _refused(disposition: dict[str, dict[str, Any]], recipients: list[Recipient], reply: str,
             where: Disposition = Disposition.REJECTED, by: str = "") -> None:
    for r in recipients:
        disposition.setdefault(r.address, {"where": where, "reply": reply or None, "by": by or None})


async def _session(config: TransportConfig, rc: ReceiveConnector, steps: SubmissionSteps, item: MailItem,
                   tracer: Tracer, disposition: dict[str, dict[str, Any]]) -> bool:
    """The SMTP commands and the message events; True when the message ends there (refused or deleted)."""
    played = SimulatedSession(steps.pipeline, item, lambda r: relay_refusal(config, item.session, r))
    denied = submit_refusal(rc, item.session)
    refusal = f"{denied} (the connector, at MAIL FROM)" if denied is not None else await played.commands()
    for r in item.recipients:
        if r.status is RecipientStatus.FAILED:
            _refused(disposition, [r], r.response, by="RCPT TO")
    if refusal is not None:
        last = next((s for s in reversed(tracer.steps) if s.action in (Action.REJECT.value, Action.DISCONNECT.value)), None)
        reply = str(denied) if denied is not None else (last.response if last is not None else refusal)
        _refused(disposition, item.recipients, reply or "(connection dropped)", by=last.agent if last else "")
        return True
    item.recipients = item.pending()
    before = [(h.name, h.value) for h in item.headers]
    steps.stamp(item)
    after = [(h.name, h.value) for h in item.headers]
    tracer.steps.append(Step("Submission", "header firewall and trace stamps", stamps=[
        f"removed {n}: {v}" for n, v in before if (n, v) not in after] + [f"{n}: {v}" for n, v in after if (n, v) not in before]))
    ended = await steps.message_events(item)
    await played.close()
    if ended is None:
        return False
    if ended.action is Action.DELETE:
        _refused(disposition, item.recipients, "", Disposition.DELETED, ended.decided_by)
    else:
        _refused(disposition, item.recipients, str(ended.response or "(connection dropped)"), by=ended.decided_by)
    return True


async def _categorize(config: TransportConfig, pipeline: Pipeline, item: MailItem, disposition: dict[str, dict[str, Any]]) -> None:
    """The categorizer's order: OnSubmitted, resolve, OnResolved, route, OnRouted, OnCategorized; then where each
    recipient's copy goes."""
    routes = RoutingTable(config)
    for event_cls in (SubmittedEvent, ResolvedEvent, RoutedEvent, CategorizedEvent):
        if event_cls is ResolvedEvent:
            resolve(item, routes)
        elif event_cls is RoutedEvent:
            route(item, routes)
        if pipeline.has(event_cls.name):
            event: RoutingEvent = event_cls(item)
            await pipeline.run(event)
            if event.action is Action.DELETE:
                _refused(disposition, item.pending(), "", Disposition.DELETED, event.decided_by)
            elif event.action is Action.DEFER:
                _refused(disposition, item.pending(), str(event.response or f"deferred {event.defer_seconds:g}s"),
                         Disposition.DEFERRED, event.decided_by)
    mailboxes = MailboxStore(config.data_root / "mailboxes", config)
    for r in item.recipients:
        if r.address in disposition:
            continue
        if r.status is RecipientStatus.FAILED:
            disposition[r.address] = {"where": Disposition.FAILED, "reply": r.response, "by": "categorizer"}
        elif r.next_hop == MAILBOX_QUEUE:
            placement = mailboxes.folder_for(item, r.address)
            where = Disposition.QUARANTINE if placement.quarantined else (
                Disposition.JUNK if placement.folder == JUNK_FOLDER else Disposition.INBOX)
            disposition[r.address] = {"where": where, "mailbox": placement.mailbox, "folder": placement.label,
                                      "junk_threshold": mailboxes.thresholds.for_mailbox(
                                          config.mailbox(r.address)).junk_threshold}
            if placement.quarantined:
                disposition[r.address]["reason"] = placement.reason
        elif r.next_hop == UNREACHABLE:
            disposition[r.address] = {"where": Disposition.UNREACHABLE, "next_hop": UNREACHABLE}
        else:
            disposition[r.address] = {"where": Disposition.RELAYED, "next_hop": r.next_hop}
