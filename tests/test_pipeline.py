"""transport.core.pipeline: loading agents by name, ordering by priority, first-acting-wins, and error policies."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from agents import (
    AgentConfig, ConnectEvent, EndOfDataEvent, MailItem, RcptToEvent, Recipient, RoutingAgent, SessionInfo,
    SmtpReceiveAgent, SmtpResponse, SubmittedEvent,
)
from transport.core.agent import Agent, AgentContext
from transport.core.config import AgentEntry, ErrorPolicy, TransportConfig
from transport.core.counters import Counters
from transport.core.dns import DnsResolver, DnsSettings
from transport.core.events import Action
from transport.core.errors import AgentLoadError
from transport.core.pipeline import AgentFailure, LoadedAgent, Pipeline, load_pipeline, resolve_class

CALLS: list[str] = []


class Recorder(SmtpReceiveAgent):
    name = "Recorder"

    class Config(AgentConfig):
        act: bool = False
        tag: str = ""

    async def on_rcpt_to(self, event: RcptToEvent) -> None:
        CALLS.append(self.config.tag)
        if self.config.act:
            event.reject_command(SmtpResponse(550, "5.7.1", self.config.tag), "tagged")

    async def on_end_of_data(self, event: EndOfDataEvent) -> None:
        CALLS.append(self.config.tag)


class Boom(SmtpReceiveAgent):
    name = "Boom"

    async def on_connect(self, event: ConnectEvent) -> None:
        raise RuntimeError("connect")

    async def on_rcpt_to(self, event: RcptToEvent) -> None:
        raise RuntimeError("rcpt")

    async def on_end_of_data(self, event: EndOfDataEvent) -> None:
        raise ValueError("eod")


class RouteBoom(RoutingAgent):
    name = "Route Boom"

    async def on_submitted(self, event: SubmittedEvent) -> None:
        raise RuntimeError("routing")


class Lifecycle(RoutingAgent):
    name = "Lifecycle"
    events: list[str] = []

    async def start(self) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")
        raise RuntimeError("stop fails, the others still stop")


class Waiter(SmtpReceiveAgent):
    """Waits for the test to set GATE, then raises: its time is its steps, its error still reaches the pipeline."""

    name = "Waiter"
    gate: asyncio.Event | None = None

    async def on_rcpt_to(self, event: RcptToEvent) -> None:
        assert self.gate is not None
        await self.gate.wait()
        raise RuntimeError("after the wait")


class NotAnAgent:
    pass


class PlainAgent(Agent):
    """Subclasses the common base only: neither a receive nor a routing agent."""

    name = "Plain"


@pytest.fixture(autouse=True)
def _clear():
    CALLS.clear()


def context() -> AgentContext:
    return AgentContext(TransportConfig(), DnsResolver(DnsSettings(use_network=False)), Counters(),
                        logging.getLogger("test"))


def entry(cls: str, **kw) -> AgentEntry:
    return AgentEntry.model_validate({"class": cls, **kw})


def rcpt_event() -> RcptToEvent:
    r = Recipient("alice@contoso.com")
    return RcptToEvent(SessionInfo(), "john@fabrikam.test", r, [])


def eod_event() -> EndOfDataEvent:
    item = MailItem("john@fabrikam.test", [Recipient("alice@contoso.com")], b"Subject: x\r\n\r\nbody\r\n")
    return EndOfDataEvent(item.session, item)


# -- loading -----------------------------------------------------------------------------------------------


def test_resolve_class_by_dotted_path():
    assert resolve_class("test_pipeline:Recorder") is Recorder
    assert resolve_class("examples.recipient_block:RecipientBlockAgent").name == "Recipient Block Example"


@pytest.mark.parametrize("spec,message", [
    ("no_such_module_xyz:Agent", "cannot import 'no_such_module_xyz'"),
    ("test_pipeline:Missing", "'test_pipeline' has no 'Missing'"),
    ("test_pipeline:NotAnAgent", "is not a transport agent class"),
    ("test_pipeline:PlainAgent", "is not a transport agent class (subclass SmtpReceiveAgent or RoutingAgent)"),
    ("not-an-entry-point", "is neither `module:Class` nor a `transport.agents` entry point"),
])
def test_resolve_class_errors(spec, message):
    with pytest.raises(AgentLoadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_class(spec)


def test_load_error_names_the_entry():
    with pytest.raises(AgentLoadError) as e:
        load_pipeline([entry("test_pipeline:Recorder"), entry("test_pipeline:Missing")], context())
    assert str(e.value).startswith("agents.1.class: ") and e.value.path == ("agents", 1, "class")
    with pytest.raises(AgentLoadError) as e:
        load_pipeline([entry("test_pipeline:Recorder", config={"act": "maybe"})], context())
    assert str(e.value).startswith("agents.0.config.act: Input should be a valid boolean")


def test_disabled_agents_are_not_loaded_and_names_can_be_set():
    p = load_pipeline([entry("test_pipeline:Recorder", enabled=False),
                       entry("test_pipeline:Recorder", name="Renamed"),
                       entry("test_pipeline:RouteBoom")], context())
    assert [(la.name, la.kind) for la in p.agents] == [("Renamed", "SmtpReceiveAgent"), ("Route Boom", "RoutingAgent")]
    assert p.has("on_rcpt_to") and p.has("on_submitted") and not p.has("on_connect")
    assert Recorder.hooks() == ["on_rcpt_to", "on_end_of_data"]


# -- ordering and acting ---------------------------------------------------------------------------------


async def test_lower_priority_runs_first_then_file_order():
    p = load_pipeline([
        entry("test_pipeline:Recorder", priority=50, config={"tag": "c"}),
        entry("test_pipeline:Recorder", priority=10, config={"tag": "a"}),
        entry("test_pipeline:Recorder", priority=50, config={"tag": "d"}),
        entry("test_pipeline:Recorder", priority=20, config={"tag": "b"}),
    ], context())
    await p.run(rcpt_event())
    assert CALLS == ["a", "b", "c", "d"]
    assert [r["priority"] for r in p.table() if r["event"] == "OnRcptCommand"] == [10, 20, 50, 50]


async def test_the_first_hook_that_acts_ends_the_event():
    p = load_pipeline([
        entry("test_pipeline:Recorder", priority=1, config={"tag": "first"}),
        entry("test_pipeline:Recorder", priority=2, name="Stopper", config={"tag": "stop", "act": True}),
        entry("test_pipeline:Recorder", priority=3, config={"tag": "never"}),
    ], context())
    event = await p.run(rcpt_event())
    assert CALLS == ["first", "stop"]
    assert event.action is Action.REJECT and str(event.response) == "550 5.7.1 stop"
    assert event.decided_by == "Stopper" and event.reason == "tagged"
    assert [(r["agent"], r["calls"]) for r in p.table() if r["event"] == "OnRcptCommand"] == [
        ("Recorder", 1), ("Stopper", 1), ("Recorder", 0)]


def test_table_lists_events_in_pipeline_order():
    p = load_pipeline([entry("test_pipeline:RouteBoom", priority=1), entry("test_pipeline:Boom", priority=5),
                       entry("test_pipeline:Recorder", priority=3)], context())
    assert [(r["event"], r["agent"]) for r in p.table()] == [
        ("OnConnectEvent", "Boom"),
        ("OnRcptCommand", "Recorder"), ("OnRcptCommand", "Boom"),
        ("OnEndOfData", "Recorder"), ("OnEndOfData", "Boom"),
        ("OnSubmittedMessage", "Route Boom"),
    ]
    assert set(p.table()[0]) == {"event", "agent", "priority", "kind", "on_error", "calls", "errors"}


# -- errors --------------------------------------------------------------------------------------------------


async def test_fail_open_logs_records_and_goes_on(caplog):
    p = load_pipeline([entry("test_pipeline:Boom", priority=1), entry("test_pipeline:Recorder", priority=2,
                                                                      config={"tag": "after"})], context())
    event = eod_event()
    with caplog.at_level(logging.ERROR, logger="transport.core.pipeline"):
        await p.run(event)
    assert CALLS == ["after"] and not event.acted
    [verdict] = event.mail_item.verdicts
    assert (verdict.agent, verdict.event, verdict.action, verdict.reason) == ("Boom", "on_end_of_data", "Error", "ValueError: eod")
    assert "agent 'Boom' raised in OnEndOfData: ValueError: eod" in caplog.text
    assert p.agents[0].errors == 1


async def test_fail_closed_on_receive_events():
    p = load_pipeline([entry("test_pipeline:Boom", on_error="fail_closed"),
                       entry("test_pipeline:Recorder", priority=200, config={"tag": "never"})], context())
    rcpt = await p.run(rcpt_event())
    assert rcpt.action is Action.REJECT and str(rcpt.response) == "451 4.3.2 System not accepting network messages"
    eod = await p.run(eod_event())
    assert eod.action is Action.REJECT and str(eod.response) == "451 4.3.2 System not accepting network messages"
    assert [v.action for v in eod.mail_item.verdicts] == ["Error", "Reject"]
    connect = await p.run(ConnectEvent(SessionInfo()))
    assert connect.action is Action.REJECT and connect.response.code == 451
    assert CALLS == []  # nothing after a fail-closed error runs


async def test_fail_closed_routing_agent_raises_agent_failure():
    p = load_pipeline([entry("test_pipeline:RouteBoom", on_error="fail_closed")], context())
    item = MailItem("john@fabrikam.test", [Recipient("alice@contoso.com")], b"\r\n")
    with pytest.raises(AgentFailure, match="agent 'Route Boom' failed in OnSubmittedMessage: RuntimeError: routing"):
        await p.run(SubmittedEvent(item))
    open_p = load_pipeline([entry("test_pipeline:RouteBoom")], context())
    event = await open_p.run(SubmittedEvent(item))
    assert not event.acted


async def test_start_and_stop_every_agent():
    Lifecycle.events = []
    p = Pipeline([LoadedAgent(Lifecycle(Lifecycle.Config(), context()), f"L{i}", 1, ErrorPolicy.FAIL_OPEN, i,
                              "RoutingAgent") for i in range(2)])
    await p.start()
    await p.stop()  # each stop raises; none stops the others
    assert Lifecycle.events == ["start", "start", "stop", "stop"]


# -- time per agent ------------------------------------------------------------------------------------------


async def test_time_in_hooks_counts_the_agents_steps_not_what_runs_while_it_waits():
    p = load_pipeline([entry("test_pipeline:Waiter"), entry("test_pipeline:Recorder", config={"tag": "after"})],
                      context())
    Waiter.gate = gate = asyncio.Event()
    run = asyncio.create_task(p.run(rcpt_event()))
    while not p.agents[0].calls:  # the hook has started and waits on the gate
        await asyncio.sleep(0)
    busy_until = time.perf_counter_ns() + 50_000_000
    while time.perf_counter_ns() < busy_until:  # another session's work on the loop, 50 ms of it
        pass
    gate.set()
    event = await run
    waiter, recorder = p.agents
    assert waiter.errors == 1 and CALLS == ["after"] and not event.acted  # its error, after the wait, fail open
    assert 0 < waiter.time_ns < 50_000_000  # its own two steps, not the 50 ms the loop spent elsewhere
    assert recorder.time_ns > 0
    assert p.counts()["Waiter"] == {"calls": 1, "errors": 1, "time_us": waiter.time_ns // 1000}


async def test_a_cancelled_hook_is_cancelled_inside():
    p = load_pipeline([entry("test_pipeline:Waiter")], context())
    Waiter.gate = asyncio.Event()
    run = asyncio.create_task(p.run(rcpt_event()))
    while not p.agents[0].calls:
        await asyncio.sleep(0)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert p.agents[0].errors == 0
