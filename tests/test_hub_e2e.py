"""The hub end to end over real sockets, a real SQLite store, real Maildirs and the real tracking log."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from hubtools import (
    RawSmtp, agent, data, events_for, header_value, make_message, maildir, messages, raw_session, running_hub, send,
    tracking, wait_for,
)
from hubtools import FakeClock, base_config, scheduler_ticks, write_config
from transport.core.config import load_config
from transport.core.errors import ConfigError
from transport.hub import Hub


def store_rows(hub: Hub) -> tuple[int, int]:
    """(messages, queue items) left in the queue database."""
    return (hub.store.read("SELECT COUNT(*) FROM messages")[0][0],
            hub.store.read("SELECT COUNT(*) FROM queue_items")[0][0])


# -- the happy path and the categorizer ---------------------------------------------------------------


async def test_message_to_alice_is_delivered_and_tracked(hub, port):
    msg = make_message(subject="Quarterly report", message_id="<q1@fabrikam.test>")
    refused, reply = await send(port, "john@fabrikam.test", ["alice@contoso.com"], msg)
    assert refused == {}
    assert re.fullmatch(rb"2\.6\.0 <q1@fabrikam\.test> \[InternalId=\d+, Hostname=hub\.contoso\.com\]"
                        rb" Queued mail for delivery", reply[1])
    assert await hub.idle()
    [raw] = messages(hub, "alice@contoso.com")
    assert header_value(raw, "Subject") == "Quarterly report"
    assert header_value(raw, "Return-Path") == "<john@fabrikam.test>"
    assert raw.endswith(b"\r\n\r\nHi there.\r\n")
    assert list((maildir(hub, "alice@contoso.com") / "tmp").iterdir()) == []
    assert messages(hub, "alice@contoso.com", ".Junk") == []

    rows = [r for r in tracking(hub) if r["message-id"] == "<q1@fabrikam.test>"]
    assert [r["event-id"] for r in rows] == ["RECEIVE", "SUBMIT", "DELIVER"]
    receive, submit, deliver = rows
    assert receive["source"] == "SMTP" and receive["connector-id"] == "Default Frontend"
    assert receive["client-ip"] == "127.0.0.1" and receive["client-hostname"] == "client.fabrikam.test"
    assert receive["sender-address"] == "john@fabrikam.test"
    assert receive["message-subject"] == "Quarterly report"
    assert submit["source"] == "QUEUE"
    assert deliver["source"] == "STOREDRIVER" and deliver["recipient-address"] == "alice@contoso.com"
    assert deliver["recipient-status"].startswith("250 ")
    assert receive["internal-message-id"] == deliver["internal-message-id"] != "0"
    assert store_rows(hub) == (0, 0)  # delivered messages leave the queue database


async def test_tracking_log_file_layout(hub, port):
    await send(port, "john@fabrikam.test", ["alice@contoso.com"], make_message())
    assert await hub.idle(), "the hub did not settle"
    [log_file] = (hub.config.data_root / "logs" / "MessageTracking").glob("MSGTRK*.log")
    assert re.fullmatch(r"MSGTRK\d{8}-1\.log", log_file.name)
    head = log_file.read_text().splitlines()[:5]
    assert [line.split(":")[0] for line in head] == ["#Software", "#Version", "#Log-Type", "#Date", "#Fields"]
    assert head[4].startswith("#Fields: date-time,client-ip,client-hostname,server-ip,server-hostname,")


async def test_unknown_contoso_recipient_is_failed(hub, port):
    msg = make_message(message_id="<unknown@fabrikam.test>")
    refused, reply = await send(port, "john@fabrikam.test", ["nobody@contoso.com", "alice@contoso.com"], msg)
    assert refused == {} and reply[0] == 250  # accepted at RCPT (no recipient filter), failed by the resolver
    assert await hub.idle(), "the hub did not settle"
    rows = [r for r in tracking(hub) if r["message-id"] == "<unknown@fabrikam.test>"]
    fails = [r for r in rows if r["event-id"] == "FAIL"]
    assert len(fails) == 1
    assert fails[0]["recipient-address"] == "nobody@contoso.com"
    assert fails[0]["recipient-status"].startswith("550 5.1.1 RESOLVER.ADR.ExRecipNotFound")
    assert [r["recipient-address"] for r in rows if r["event-id"] == "DELIVER"] == ["alice@contoso.com"]
    assert not maildir(hub, "nobody@contoso.com").exists()
    assert _only_the_ndr_left(hub)


def _only_the_ndr_left(hub: Hub) -> bool:
    """What a failed recipient leaves: the NDR to john@fabrikam.test, in Unreachable (no send connector here)."""
    return [(i.queue, i.recipients) for i in hub.store.items()] == [("Unreachable", ["john@fabrikam.test"])]


async def test_only_unknown_recipients_leaves_nothing_queued(hub, port):
    await send(port, "john@fabrikam.test", ["ghost@contoso.com"], make_message(message_id="<ghost@fabrikam.test>"))
    assert await hub.idle(), "the hub did not settle"
    assert events_for(tracking(hub), "<ghost@fabrikam.test>") == ["RECEIVE", "SUBMIT", "FAIL", "DSN"]
    assert _only_the_ndr_left(hub)


async def test_one_copy_per_recipient(hub, port):
    await send(port, "john@fabrikam.test", ["alice@contoso.com", "bob@contoso.com", "Carol@Contoso.com"],
               make_message(message_id="<all@fabrikam.test>"))
    assert await hub.idle(), "the hub did not settle"
    for who in ("alice", "bob", "carol"):
        [raw] = messages(hub, f"{who}@contoso.com")
        assert f"for <{who}@contoso.com".encode() in raw.lower()
    delivered = sorted(r["recipient-address"].lower() for r in tracking(hub) if r["event-id"] == "DELIVER")
    assert delivered == ["alice@contoso.com", "bob@contoso.com", "carol@contoso.com"]


async def test_null_sender_is_delivered(hub, port):
    c = await RawSmtp.connect(port)
    await c.cmd("EHLO mta.fabrikam.test")
    assert await c.cmd("MAIL FROM:<>") == "250 2.1.0 Sender OK"
    assert await c.cmd("RCPT TO:<alice@contoso.com>") == "250 2.1.5 Recipient OK"
    assert (await data(c, make_message(message_id="<bounce@fabrikam.test>") + b".\r\n")).startswith("250 2.6.0")
    await c.close()
    assert await hub.idle(), "the hub did not settle"
    [raw] = messages(hub, "alice@contoso.com")
    assert header_value(raw, "Return-Path") == "<>"


# -- SCL and the Junk folder ---------------------------------------------------------------------------------


async def test_scl_above_the_junk_threshold_goes_to_junk(tmp_path):
    extra = {"agents": [agent("hubtools:StampScl", scl=7)]}
    async with running_hub(tmp_path, extra) as hub:
        port = hub.addresses[0][1]
        await send(port, "john@fabrikam.test", ["alice@contoso.com", "carol@contoso.com"],
                   make_message(message_id="<spam@fabrikam.test>"))
        # SCL equal to the threshold stays in the Inbox: Exchange moves mail when SCL > threshold
        await send(port, "john@fabrikam.test", ["alice@contoso.com"],
                   make_message(message_id="<edge@fabrikam.test>", extra_headers="X-Test-SCL: 4\r\n"))
        assert await hub.idle(), "the hub did not settle"
        [junk] = messages(hub, "alice@contoso.com", ".Junk")
        assert b"<spam@fabrikam.test>" in junk
        [inbox] = messages(hub, "alice@contoso.com")
        assert b"<edge@fabrikam.test>" in inbox
        # carol's own SCLJunkThreshold is 8: SCL 7 stays in her Inbox
        [carol] = messages(hub, "carol@contoso.com")
        assert b"<spam@fabrikam.test>" in carol
        assert messages(hub, "carol@contoso.com", ".Junk") == []
        assert (maildir(hub, "alice@contoso.com", ".Junk") / "maildirfolder").exists()
        folders = {(r["recipient-address"], r["source-context"]) for r in tracking(hub)
                   if r["event-id"] == "DELIVER" and r["message-id"] == "<spam@fabrikam.test>"}
        assert folders == {("alice@contoso.com", ".Junk"), ("carol@contoso.com", "Inbox")}


async def test_organization_threshold_is_configurable(tmp_path):
    extra = {"organization": {"scl_junk_threshold": 8}, "agents": [agent("hubtools:StampScl", scl=8)]}
    async with running_hub(tmp_path, extra) as hub:
        port = hub.addresses[0][1]
        await send(port, "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<s8@fabrikam.test>"))
        await send(port, "john@fabrikam.test", ["alice@contoso.com"],
                   make_message(message_id="<s9@fabrikam.test>", extra_headers="X-Test-SCL: 9\r\n"))
        assert await hub.idle(), "the hub did not settle"
        assert [b"<s8@fabrikam.test>" in m for m in messages(hub, "alice@contoso.com")] == [True]
        assert [b"<s9@fabrikam.test>" in m for m in messages(hub, "alice@contoso.com", ".Junk")] == [True]


# -- agents that crash ---------------------------------------------------------------------------------------


async def test_crashing_agent_fail_open_still_delivers(tmp_path, caplog):
    extra = {"agents": [agent("hubtools:Crash", events=["on_rcpt_to", "on_end_of_data"])]}
    async with running_hub(tmp_path, extra) as hub:
        port = hub.addresses[0][1]
        with caplog.at_level(logging.ERROR, logger="transport.core.pipeline"):
            for n in range(2):  # the hub keeps serving after the error
                _, reply = await send(port, "john@fabrikam.test", ["alice@contoso.com"],
                                      make_message(message_id=f"<open{n}@fabrikam.test>"))
                assert reply[0] == 250
        assert await hub.idle(), "the hub did not settle"
        assert len(messages(hub, "alice@contoso.com")) == 2
        [crasher] = hub.pipeline.agents
        assert crasher.errors == 4  # two hooks raised per message; the other hooks ran fine
        logged = [r.getMessage() for r in caplog.records if r.name == "transport.core.pipeline"]
        assert any("'Test Crasher' raised in OnRcptCommand: RuntimeError: boom in on_rcpt_to" in m for m in logged)
        assert any("'Test Crasher' raised in OnEndOfData" in m for m in logged)
        # recorded in the tracking log too: the session event's error in a row of its own, with the session id
        rows = tracking(hub)
        at_rcpt = [r for r in rows if r["event-id"] == "AGENTINFO" and "at on_rcpt_to" in r["custom-data"]]
        assert len(at_rcpt) == 2
        assert all(r["custom-data"] == "Test Crasher: Error at on_rcpt_to (RuntimeError: boom in on_rcpt_to); fail_open"
                   and r["recipient-address"] == "alice@contoso.com" and r["sender-address"] == "john@fabrikam.test"
                   and r["connector-id"] == "Default Frontend"
                   for r in at_rcpt)
        received = {r["source-context"] for r in rows if r["event-id"] == "RECEIVE"}
        assert {r["source-context"] for r in at_rcpt} == received and len(received) == 2
        on_message = [r for r in rows if r["event-id"] == "AGENTINFO" and "Error at on_end_of_data" in r["custom-data"]]
        assert [r["message-id"] for r in on_message] == ["<open0@fabrikam.test>", "<open1@fabrikam.test>"]


@pytest.mark.parametrize("event,where", [("on_mail_from", "mail"), ("on_rcpt_to", "rcpt"),
                                          ("on_data", "data"), ("on_end_of_headers", "eod"),
                                          ("on_end_of_data", "eod")])
async def test_crashing_agent_fail_closed_answers_451(tmp_path, event, where):
    extra = {"agents": [agent("hubtools:Crash", on_error="fail_closed", events=[event])]}
    async with running_hub(tmp_path, extra) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1])
        await c.cmd("EHLO client.fabrikam.test")
        error = "451 4.3.2 System not accepting network messages"
        mail = await c.cmd("MAIL FROM:<john@fabrikam.test>")
        if where == "mail":
            assert mail == error
            await c.close()
            return
        assert mail == "250 2.1.0 Sender OK"
        rcpt = await c.cmd("RCPT TO:<alice@contoso.com>")
        if where == "rcpt":
            assert rcpt == error
            assert await c.cmd("NOOP") == "250 2.0.0 OK"  # only the command failed; the session goes on
            await c.close()
            return
        assert rcpt == "250 2.1.5 Recipient OK"
        if where == "data":
            assert await c.cmd("DATA") == error
            await c.close()
            return
        assert await data(c, make_message(message_id="<closed@fabrikam.test>") + b".\r\n") == error
        await c.close()
        assert await hub.idle(), "the hub did not settle"
        assert messages(hub, "alice@contoso.com") == []
        assert "RECEIVE" not in events_for(tracking(hub), "<closed@fabrikam.test>")


async def test_crashing_on_connect_fail_closed(tmp_path):
    extra = {"agents": [agent("hubtools:Crash", on_error="fail_closed", events=["on_connect"])]}
    async with running_hub(tmp_path, extra) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1], read_banner=False)
        assert await c.reply() == "451 4.3.2 System not accepting network messages"
        assert await c.closed()


async def test_crashing_routing_agent_fail_open_still_delivers(tmp_path):
    extra = {"agents": [agent("hubtools:RouteTrace", crash_at="on_routed")]}
    async with running_hub(tmp_path, extra) as hub:
        await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"], make_message())
        assert await hub.idle(), "the hub did not settle"
        [raw] = messages(hub, "alice@contoso.com")
        assert raw.count(b"X-Route-Trace:") == 4
        assert hub.pipeline.agents[0].errors == 1


async def test_crashing_routing_agent_fail_closed_goes_to_poison(tmp_path):
    extra = {"queue": {"poison_threshold": 1},
             "agents": [agent("hubtools:RouteTrace", on_error="fail_closed", crash_at="on_submitted")]}
    async with running_hub(tmp_path, extra) as hub:
        _, reply = await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"],
                              make_message(message_id="<poison@fabrikam.test>"))
        assert reply[0] == 250
        await wait_for(lambda: "POISONMESSAGE" in events_for(tracking(hub), "<poison@fabrikam.test>"))
        assert hub.store.read("SELECT queue, status FROM queue_items") == [("Poison", "Suspended")]
        assert messages(hub, "alice@contoso.com") == []


# -- receive agents acting ----------------------------------------------------------------------------------


async def test_on_connect_reject_connection(tmp_path):
    extra = {"agents": [agent("hubtools:Act", event="on_connect", action="reject_connection",
                              code=554, enhanced="5.7.1", text="Go away")]}
    async with running_hub(tmp_path, extra) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1], read_banner=False)
        assert await c.reply() == "554 5.7.1 Go away"
        assert await c.closed()


async def test_on_connect_disconnect_sends_nothing(tmp_path):
    extra = {"agents": [agent("hubtools:Act", event="on_connect", action="disconnect")]}
    async with running_hub(tmp_path, extra) as hub:
        reader, writer = await asyncio.open_connection(*hub.addresses[0])
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_command_events_reject(tmp_path):
    extra = {"agents": [agent("hubtools:Act", event="on_rcpt_to", code=550, enhanced="5.1.10", text="No such user")]}
    async with running_hub(tmp_path, extra) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1])
        await c.cmd("EHLO client.fabrikam.test")
        await c.cmd("MAIL FROM:<john@fabrikam.test>")
        assert await c.cmd("RCPT TO:<alice@contoso.com>") == "550 5.1.10 No such user"
        assert await c.cmd("DATA") == "503 5.5.2 Need rcpt command"
        await c.close()


@pytest.mark.parametrize("event", ["on_end_of_headers", "on_end_of_data"])
async def test_message_event_reject_message(tmp_path, event):
    extra = {"agents": [agent("hubtools:Act", event=event, code=550, enhanced="5.7.1", text="Message refused")]}
    async with running_hub(tmp_path, extra) as hub:
        c = await raw_session(hub.addresses[0][1])
        assert await data(c, make_message(message_id="<rej@fabrikam.test>") + b".\r\n") == "550 5.7.1 Message refused"
        assert await c.cmd("NOOP") == "250 2.0.0 OK"
        await c.close()
        assert await hub.idle(), "the hub did not settle"
        assert messages(hub, "alice@contoso.com") == []
        rows = [r for r in tracking(hub) if r["message-id"] == "<rej@fabrikam.test>"]
        assert [r["event-id"] for r in rows] == ["AGENTINFO"]
        assert rows[0]["recipient-status"] == "550 5.7.1 Message refused"
        assert rows[0]["custom-data"].startswith("Test Actor")
        seen = hub.pipeline.agents[0].agent.seen
        if event == "on_end_of_headers":  # the first event that acts ends the message
            assert "on_end_of_data" not in seen


@pytest.mark.parametrize("event", ["on_end_of_headers", "on_end_of_data"])
async def test_message_event_delete_fakes_250(tmp_path, event):
    extra = {"agents": [agent("hubtools:Act", event=event, action="delete")]}
    async with running_hub(tmp_path, extra) as hub:
        c = await raw_session(hub.addresses[0][1])
        reply = await data(c, make_message(message_id="<del@fabrikam.test>") + b".\r\n")
        assert reply.startswith("250 2.6.0 <del@fabrikam.test> ") and reply.endswith("Queued mail for delivery")
        await c.close()
        assert await hub.idle(), "the hub did not settle"
        assert messages(hub, "alice@contoso.com") == []
        assert events_for(tracking(hub), "<del@fabrikam.test>") == ["AGENTINFO"]
        assert store_rows(hub) == (0, 0)


@pytest.mark.parametrize("event", ["on_end_of_headers", "on_end_of_data"])
async def test_message_event_disconnect(tmp_path, event):
    extra = {"agents": [agent("hubtools:Act", event=event, action="disconnect")]}
    async with running_hub(tmp_path, extra) as hub:
        c = await raw_session(hub.addresses[0][1])
        assert (await c.cmd("DATA")).startswith("354")
        await c.write(make_message(message_id="<disc@fabrikam.test>") + b".\r\n")
        assert await c.closed()
        assert await hub.idle(), "the hub did not settle"
        assert messages(hub, "alice@contoso.com") == []
        assert "RECEIVE" not in events_for(tracking(hub), "<disc@fabrikam.test>")


async def test_message_event_quarantine_goes_to_the_quarantine_mailbox(tmp_path):
    quarantine = "quarantine@contoso.com"
    extra = {"agents": [agent("hubtools:Act", event="on_end_of_data", action="quarantine")],
             "mailboxes": base_config(tmp_path)["mailboxes"] + [{"address": quarantine}],
             "organization": {"quarantine_mailbox": quarantine}}
    async with running_hub(tmp_path, extra) as hub:
        c = await raw_session(hub.addresses[0][1], recipients=("alice@contoso.com", "carol@contoso.com"))
        assert (await data(c, make_message(message_id="<q@fabrikam.test>") + b".\r\n")).startswith("250 2.6.0")
        await c.close()
        assert await hub.idle(), "the hub did not settle"
        for who in ("alice", "carol"):
            assert messages(hub, f"{who}@contoso.com") == messages(hub, f"{who}@contoso.com", ".Junk") == []
        copies = messages(hub, quarantine)
        assert sorted(header_value(raw, "X-MS-Exchange-Organization-OriginalEnvelopeRecipients") for raw in copies) == [
            "<alice@contoso.com>", "<carol@contoso.com>"]
        assert {header_value(raw, "X-MS-Exchange-Organization-Original-Sender") for raw in copies} == {"<john@fabrikam.test>"}
        assert header_value(copies[0], "X-Transport-Quarantine-Reason") == "Test Actor: test"
        rows = [r for r in tracking(hub) if r["message-id"] == "<q@fabrikam.test>"]
        redirects = [(r["recipient-address"], r["related-recipient-address"]) for r in rows if r["event-id"] == "REDIRECT"]
        assert sorted(redirects) == [("alice@contoso.com", quarantine), ("carol@contoso.com", quarantine)]
        delivered = [(r["recipient-address"], r["source-context"], r["related-recipient-address"])
                     for r in rows if r["event-id"] == "DELIVER"]
        assert sorted(delivered) == [("alice@contoso.com", "Quarantine", quarantine),
                                     ("carol@contoso.com", "Quarantine", quarantine)]


async def test_quarantine_without_a_quarantine_mailbox_delivers_as_usual(tmp_path):
    extra = {"agents": [agent("hubtools:Act", event="on_end_of_data", action="quarantine")]}
    async with running_hub(tmp_path, extra) as hub:
        c = await raw_session(hub.addresses[0][1])
        assert (await data(c, make_message(message_id="<q@fabrikam.test>") + b".\r\n")).startswith("250 2.6.0")
        await c.close()
        assert await hub.idle(), "the hub did not settle"
        assert len(messages(hub, "alice@contoso.com")) == 1
        assert "REDIRECT" not in events_for(tracking(hub), "<q@fabrikam.test>")


def test_quarantine_mailbox_must_be_a_mailbox(tmp_path):
    path = write_config(tmp_path, {"organization": {"quarantine_mailbox": "nobody@contoso.com"}})
    with pytest.raises(ConfigError, match=r"organization.quarantine_mailbox: nobody@contoso.com is not one of the mailboxes"):
        load_config(path)


# -- routing agents -------------------------------------------------------------------------------------------


async def test_routing_events_run_in_order(tmp_path):
    extra = {"agents": [
        {**agent("hubtools:RouteTrace", priority=20), "name": "Second"},
        {**agent("hubtools:RouteTrace", priority=10), "name": "First"},
    ]}
    async with running_hub(tmp_path, extra) as hub:
        await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"],
                   make_message(message_id="<route@fabrikam.test>"))
        assert await hub.idle(), "the hub did not settle"
        [raw] = messages(hub, "alice@contoso.com")
        from transport.core.headers import parse_headers

        trace = [h.value for h in parse_headers(raw) if h.key == "x-route-trace"]
        events = ["on_submitted", "on_resolved", "on_routed", "on_categorized"]
        assert trace == [e for e in events for _ in range(2)]
        second, first = (la.agent for la in sorted(hub.pipeline.agents, key=lambda la: la.position))
        assert [e for e, _ in first.seen] == events == [e for e, _ in second.seen]
        assert [la.name for la in hub.pipeline.agents] == ["First", "Second"]


async def test_routing_agent_defer_then_delivers(tmp_path):
    """A routing agent's Defer(600 s) holds the message in the Submission queue for exactly that long."""
    extra = {"agents": [agent("hubtools:RouteTrace", defer_at="on_resolved", defer_seconds=600)],
             "queue": {"admin_poll_interval": 0.05}}
    clock = FakeClock()
    async with running_hub(tmp_path, extra, clock=clock) as hub:
        await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"],
                   make_message(message_id="<later@fabrikam.test>"))
        await wait_for(lambda: "DEFER" in events_for(tracking(hub), "<later@fabrikam.test>"))
        clock.advance(599)
        await scheduler_ticks(hub)
        assert "DELIVER" not in events_for(tracking(hub), "<later@fabrikam.test>")
        clock.advance(1)
        await wait_for(lambda: "DELIVER" in events_for(tracking(hub), "<later@fabrikam.test>"))
        rows = [r for r in tracking(hub) if r["message-id"] == "<later@fabrikam.test>"]
        kinds = [r["event-id"] for r in rows]
        assert kinds[:3] == ["RECEIVE", "SUBMIT", "DEFER"] and kinds[-1] == "DELIVER"
        assert rows[2]["recipient-status"] == "451 4.7.0 test defer"
        seen = [e for e, _ in hub.pipeline.agents[0].agent.seen]
        assert seen == ["on_submitted", "on_resolved", "on_submitted", "on_resolved", "on_routed", "on_categorized"]
        assert len(messages(hub, "alice@contoso.com")) == 1


@pytest.mark.parametrize("event", ["on_submitted", "on_resolved", "on_routed", "on_categorized"])
async def test_routing_agent_delete(tmp_path, event):
    extra = {"agents": [agent("hubtools:RouteTrace", delete_at=event)]}
    async with running_hub(tmp_path, extra) as hub:
        _, reply = await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"],
                              make_message(message_id="<gone@fabrikam.test>"))
        assert reply[0] == 250
        assert await hub.idle(), "the hub did not settle"
        assert messages(hub, "alice@contoso.com") == []
        rows = [r for r in tracking(hub) if r["message-id"] == "<gone@fabrikam.test>"]
        assert [r["event-id"] for r in rows] == ["RECEIVE", "SUBMIT", "AGENTINFO"]
        assert "deleted" in rows[-1]["custom-data"]
        assert store_rows(hub) == (0, 0)
        seen = [e for e, _ in hub.pipeline.agents[0].agent.seen]
        assert seen[-1] == event  # nothing after the deleting event runs


# -- durability across a restart -----------------------------------------------------------------------------


async def test_message_queued_before_a_restart_is_delivered_after_it(tmp_path):
    async def never() -> None:
        await asyncio.Event().wait()

    def no_delivery(hub: Hub) -> None:
        hub.scheduler.queues["mailbox"].run = never  # the message gets routed to the mailbox queue, and stays there

    async with running_hub(tmp_path, before_start=no_delivery) as hub:
        _, reply = await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com", "bob@contoso.com"],
                              make_message(message_id="<restart@fabrikam.test>"))
        assert reply[0] == 250
        await wait_for(lambda: hub.store.read("SELECT queue FROM queue_items") == [("mailbox",)])
        assert messages(hub, "alice@contoso.com") == []
    # a new hub on the same data root
    hub2 = Hub(load_config(write_config(tmp_path)))
    await hub2.start()
    try:
        await wait_for(lambda: messages(hub2, "alice@contoso.com") and messages(hub2, "bob@contoso.com"))
        assert await hub2.idle()
        await scheduler_ticks(hub2)  # nothing must be delivered twice
        assert len(messages(hub2, "alice@contoso.com")) == 1 and len(messages(hub2, "bob@contoso.com")) == 1
        assert store_rows(hub2) == (0, 0)
        delivered = [r for r in tracking(hub2) if r["event-id"] == "DELIVER"]
        assert sorted(r["recipient-address"] for r in delivered) == ["alice@contoso.com", "bob@contoso.com"]
    finally:
        await hub2.stop(grace=1)


async def test_message_left_in_the_submission_queue_is_categorized_once_after_a_restart(tmp_path):
    async def never() -> None:
        await asyncio.Event().wait()

    def no_categorizer(hub: Hub) -> None:
        hub.categorizer.run = never  # acknowledged with 250, still in the Submission queue at shutdown

    routing_agent = {"agents": [agent("hubtools:RouteTrace")]}  # so the message is not routed ahead of its commit
    async with running_hub(tmp_path, routing_agent, before_start=no_categorizer) as hub:
        _, reply = await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"],
                              make_message(message_id="<sub@fabrikam.test>"))
        assert reply[0] == 250
        assert hub.store.read("SELECT queue, status FROM queue_items") == [("Submission", "Ready")]
    async with running_hub(tmp_path) as hub2:
        await wait_for(lambda: messages(hub2, "alice@contoso.com"))
        await scheduler_ticks(hub2)  # past the queue scheduler's first ticks
        assert await hub2.idle()
        assert len(messages(hub2, "alice@contoso.com")) == 1
        assert events_for(tracking(hub2), "<sub@fabrikam.test>") == ["RECEIVE", "SUBMIT", "DELIVER"]
        assert store_rows(hub2) == (0, 0)


async def test_receive_events_in_session_order_with_on_reject_and_on_disconnect(tmp_path):
    async with running_hub(tmp_path, {"agents": [agent("hubtools:Watch")]}) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1])
        await c.cmd("HELO client.fabrikam.test")
        await c.cmd("EHLO client.fabrikam.test")
        import base64

        await c.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice@contoso.com\0wrong").decode())
        await c.cmd("MAIL FROM:<john@fabrikam.test>")
        await c.cmd("RCPT TO:<x@fabrikam.test>")
        await c.cmd("RCPT TO:<alice@contoso.com>")
        assert (await data(c, make_message(message_id="<w@fabrikam.test>") + b".\r\n")).startswith("250")
        await c.cmd("RSET")
        await c.cmd("QUIT")
        assert await c.closed()
        watch = hub.pipeline.agents[0].agent
        await wait_for(lambda: "on_disconnect" in watch.seen)
        assert watch.seen == [
            "on_connect", "on_helo", "on_ehlo", "on_auth", "on_reject 535 5.7.3 Authentication unsuccessful",
            "on_mail_from", "on_reject 550 5.7.1 Unable to relay", "on_rcpt_to", "on_data",
            "on_end_of_headers", "on_end_of_data", "on_rset", "on_disconnect"]


async def test_raw_8bit_headers_are_queued_and_delivered(hub, port):
    """Latin-1 bytes in headers (no SMTPUTF8, no encoded words) are common in real mail: they must not make the
    queue or the tracking log fail."""
    raw = b"From: J\xe9r\xf4me <jerome@fabrikam.test>\r\nTo: alice@contoso.com\r\nSubject: \xe9t\xe9 \xff\r\n" \
          b"Message-ID: <latin1@t>\r\n\r\nbody \xe9\r\n"
    _, reply = await send(port, "jerome@fabrikam.test", ["alice@contoso.com"], raw)
    assert reply[0] == 250
    await wait_for(lambda: messages(hub, "alice@contoso.com"))
    assert await hub.idle()  # the file shows in new/ before its DELIVER row is written
    assert b"Subject: \xe9t\xe9 \xff\r\n" in messages(hub, "alice@contoso.com")[0]  # the bytes are untouched
    rows = [r for r in tracking(hub) if r["message-id"] == "<latin1@t>"]
    assert {r["event-id"] for r in rows} >= {"RECEIVE", "DELIVER"}
    assert "\ufffd" in rows[0]["message-subject"]
