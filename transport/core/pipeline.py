"""The agent pipeline: loading agents from configuration, ordering them, and running their hooks.

Ordering is data: by event, then by priority (lower first), then by position in the file. An agent's
exception never reaches the caller: it is logged with the agent's name, recorded (on the mail item, whose
tracking rows carry it, or, at a session event such as OnRcptCommand, as an AGENTINFO row of its own with the
session id), counted, and handled by the agent's error policy (fail open: go on; fail closed: 451 4.3.2 on receive events, a
crash on routing events, which the queue counts towards Poison). Each agent's calls, errors and time in its
hooks are counted (`counts()`), for `transport pipeline`, the metrics endpoint and `make bench`.
"""

from __future__ import annotations

import importlib
import logging
import types
from dataclasses import dataclass
from importlib.metadata import entry_points
from time import perf_counter_ns
from typing import Any, Awaitable, Callable, Protocol

from pydantic import ValidationError

from .agent_log import AgentLog
from .agent import HANDLING, Agent, AgentContext, RoutingAgent, SmtpReceiveAgent
from .config import AgentEntry, ErrorPolicy
from .errors import AgentLoadError
from .events import EVENTS, ROUTING_EVENTS, Event, MessageEvent, ReceiveEvent, Replies, RoutingEvent
from .mailitem import MailItem, Stamp, Verdict
from .tracking import TrackingEvent, TrackingLog

__all__ = ["AgentFailure", "LoadedAgent", "Pipeline", "PipelineObserver", "import_object", "load_agent", "load_pipeline"]

log = logging.getLogger("transport.core.pipeline")


class AgentFailure(Exception):
    """A fail-closed routing agent raised: the categorizer treats the message as having crashed it."""

    def __init__(self, agent: str, event: str, error: BaseException) -> None:
        super().__init__(f"agent {agent!r} failed in {event}: {type(error).__name__}: {error}")
        self.agent, self.event = agent, event


@dataclass
class LoadedAgent:
    agent: Agent
    name: str
    priority: int
    on_error: ErrorPolicy
    position: int
    kind: str
    calls: int = 0
    errors: int = 0
    time_ns: int = 0  # in its hooks' own steps on the loop, not while they wait (see `_timed`)


def import_object(spec: str) -> Any:
    """What `package.module:Name` (a dotted attribute path after the colon) names; AgentLoadError says why not."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise AgentLoadError(f"cannot import {module_name!r}: {e}") from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise AgentLoadError(f"{module_name!r} has no {attr!r}")
    return obj


def resolve_class(spec: str) -> type[Agent]:
    """`package.module:Class`, or the name of an entry point in the `transport.agents` group."""
    if ":" in spec:
        obj = import_object(spec)
    else:
        found = [ep for ep in entry_points(group="transport.agents") if ep.name == spec]
        if not found:
            raise AgentLoadError(f"{spec!r} is neither `module:Class` nor a `transport.agents` entry point")
        obj = found[0].load()
    if not (isinstance(obj, type) and issubclass(obj, (SmtpReceiveAgent, RoutingAgent))):
        raise AgentLoadError(f"{spec!r} is not a transport agent class (subclass SmtpReceiveAgent or RoutingAgent)")
    return obj


def load_agent(index: int, entry: AgentEntry, context: AgentContext) -> LoadedAgent:
    """The agent of configuration entry `index`, made and configured; AgentLoadError says what is wrong and where."""
    try:
        cls = resolve_class(entry.cls)
    except AgentLoadError as e:
        raise AgentLoadError(f"agents.{index}.class: {e}", ("agents", index, "class")) from None
    try:
        cfg = cls.Config.model_validate(entry.config, context={"transport": context.config})  # settings may check the rest
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in ("agents", index, "config") + loc)
        msg = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        raise AgentLoadError(f"{key}: {msg}", ("agents", index, "config") + loc) from None
    name = entry.name or cls.name or cls.__name__
    agent = cls(cfg, context)
    agent.pipeline_name = name
    kind = SmtpReceiveAgent.__name__ if isinstance(agent, SmtpReceiveAgent) else RoutingAgent.__name__
    return LoadedAgent(agent, name, entry.priority, entry.on_error, index, kind)


class PipelineObserver(Protocol):
    """Sees every hook call (`transport trace` records each agent's decision, stamps and DNS queries)."""

    def before(self, agent: LoadedAgent, event: Event) -> None: ...

    def after(self, agent: LoadedAgent, event: Event, error: Exception | None) -> None: ...


class Pipeline:
    """Hooks per event, in order; `run` calls them until one acts. Verdicts and errors go to the agent log."""

    def __init__(self, agents: list[LoadedAgent], tracking: TrackingLog | None = None,
                 connector_agents: dict[str, frozenset[str]] | None = None, agent_log: AgentLog | None = None) -> None:
        self.agents = sorted(agents, key=lambda a: (a.priority, a.position))
        self.tracking = tracking
        self.agent_log = agent_log
        self.observer: PipelineObserver | None = None
        self.connector_agents = connector_agents or {}  # connector → the agents that run on it (absent: all)
        self._hooks: dict[str, list[tuple[LoadedAgent, Callable[[Any], Awaitable[None]]]]] = {}
        for la in self.agents:
            for event_name in la.agent.hooks():
                self._hooks.setdefault(event_name, []).append((la, getattr(la.agent, event_name)))

    def has(self, event_name: str) -> bool:
        return event_name in self._hooks

    @property
    def has_routing_agents(self) -> bool:
        return any(self.has(e.name) for e in ROUTING_EVENTS)

    async def run(self, event: Event) -> Event:
        """Run the event's hooks in order; stop at the first that acts. Never raises an agent's error.

        A receive event runs only the agents enabled on the session's receive connector (its `agents:` list),
        as Exchange 2003 enabled each filter per SMTP virtual server. A message an agent submitted is not handed
        to that agent."""
        only = self.connector_agents.get(event.session.connector) if isinstance(event, ReceiveEvent) else None
        item: MailItem | None = getattr(event, "mail_item", None)
        made_by = item.stamps.get(Stamp.GENERATED_BY) if item is not None else None
        observer, agent_log = self.observer, self.agent_log
        handling = HANDLING.set(item)
        try:
            for la, hook in self._hooks.get(event.name, ()):
                if (only is not None and la.name not in only) or la.name == made_by:  # never its own message
                    continue
                event.agent = la.name
                la.calls += 1
                mark = len(item.verdicts) if item is not None else 0
                if observer is not None:
                    observer.before(la, event)
                error = None
                try:
                    await _timed(hook(event), la)
                except Exception as e:  # an agent must never take the hub down
                    la.errors += 1
                    error = e
                    self._failed(la, event, e)
                if observer is not None:
                    observer.after(la, event, error)
                if agent_log is not None and (error is not None or event.acted
                                              or (item is not None and len(item.verdicts) > mark)):
                    agent_log.record(la.name, event, item.verdicts[mark:] if item is not None else [], error)
                if event.acted:
                    break
        finally:
            HANDLING.reset(handling)
        return event

    def _failed(self, la: LoadedAgent, event: Event, error: Exception) -> None:
        log.error("agent %r raised in %s: %s: %s", la.name, event.exchange_name, type(error).__name__, error,
                  exc_info=error)
        summary = f"{type(error).__name__}: {error}".splitlines()[0] if str(error) else type(error).__name__
        mail_item = getattr(event, "mail_item", None)
        if mail_item is not None:
            mail_item.record(Verdict(la.name, event.name, "Error", summary))
        elif self.tracking is not None and isinstance(event, ReceiveEvent):
            session = event.session
            sender = getattr(event, "sender", "")
            recipient = getattr(event, "recipient", None)
            self.tracking.log(TrackingEvent.AGENTINFO, MailItem(sender=sender, recipients=[], raw=b"", session=session), "AGENT",
                              [recipient.address] if recipient is not None else [],
                              source_context=session.session_id, connector_id=session.connector,
                              custom_data=f"{la.name}: Error at {event.name} ({summary}); {la.on_error.value}")
        if la.on_error is ErrorPolicy.FAIL_OPEN:
            return
        if isinstance(event, RoutingEvent):
            raise AgentFailure(la.name, event.exchange_name, error) from error
        if isinstance(event, MessageEvent):
            event.reject_message(Replies.AGENT_ERROR, f"agent error: {type(error).__name__}")
        elif hasattr(event, "reject_command"):
            event.reject_command(Replies.AGENT_ERROR, f"agent error: {type(error).__name__}")
        elif hasattr(event, "reject_connection"):
            event.reject_connection(Replies.AGENT_ERROR, f"agent error: {type(error).__name__}")

    async def start(self) -> None:
        for la in self.agents:
            await la.agent.start()

    async def stop(self) -> None:
        for la in reversed(self.agents):
            try:
                await la.agent.stop()
            except Exception:
                log.exception("agent %r failed to stop", la.name)

    def counts(self) -> dict[str, dict[str, int]]:
        """Each agent's hook calls, errors and time in its hooks (µs) so far."""
        return {la.name: {"calls": la.calls, "errors": la.errors, "time_us": la.time_ns // 1000} for la in self.agents}

    def close(self) -> None:
        if self.agent_log is not None:
            self.agent_log.close()

    def table(self) -> list[dict[str, Any]]:
        """Events in pipeline order with their agents, like Get-TransportPipeline."""
        rows = []
        for name, cls in EVENTS.items():
            for la, _ in self._hooks.get(name, ()):
                rows.append({"event": cls.exchange_name, "agent": la.name, "priority": la.priority,
                             "kind": la.kind, "on_error": la.on_error.value, "calls": la.calls, "errors": la.errors})
        return rows


@types.coroutine
def _timed(hook: Any, la: LoadedAgent) -> Any:
    """Await the hook's coroutine, adding the time of each of its steps to `la.time_ns`.

    Timing the steps, not the `await`, leaves out what other sessions run while the hook waits (a DNS answer,
    a thread): what is left is the agent's cost on the event loop. perf_counter_ns is a vDSO read (≈ 80 ns);
    the thread's CPU clock would be a system call (≈ 1 µs here), for about the same figure."""
    value, error = None, None
    while True:
        start = perf_counter_ns()
        try:
            yielded = hook.throw(error) if error is not None else hook.send(value)
        except StopIteration as done:
            return done.value
        finally:
            la.time_ns += perf_counter_ns() - start
        try:
            value, error = (yield yielded), None
        except BaseException as e:  # cancellation (or close) goes on into the hook
            value, error = None, e


def load_pipeline(entries: list[AgentEntry], context: AgentContext, tracking: TrackingLog | None = None,
                  agent_log: AgentLog | None = None) -> Pipeline:
    """Instantiate the enabled agents; raise AgentLoadError naming the entry at fault. Errors of agents at session
    events are written to `tracking`, verdicts and errors to `agent_log`, when given."""
    scopes = {c.name: frozenset(c.agents) for c in context.config.receive_connectors if c.agents is not None}
    return Pipeline([load_agent(i, e, context) for i, e in enumerate(entries) if e.enabled], tracking, scopes, agent_log)

