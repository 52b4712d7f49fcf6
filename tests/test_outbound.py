"""Outbound: send connectors to a smart host and to the MX of a demo zone, against a real aiosmtpd server on
loopback; retries, NDRs for 5xx replies, expiry, NOTIFY, the null sender, hop-count loops, connection reuse."""

from __future__ import annotations

import json
import threading

import pytest

from dsntools import Sink, SinkServer, mx_zone, report_parts, send_dsn
from hubtools import PASSWORD, FakeClock, free_port, make_message, messages, run_cli, running_hub, scheduler_ticks, tracking, wait_for

ALICE = ("alice@contoso.com", PASSWORD)
FAST = {"queue": {"admin_poll_interval": 0.1}}  # the scheduler looks often; retries keep Exchange's intervals


def smart_host(port: int, **settings) -> dict:
    return {**FAST, "send_connectors": [{"name": "Smarthost", "address_spaces": ["*"],
                                         "smart_hosts": [f"127.0.0.1:{port}"], **settings}]}


def rows(hub, event: str, message_id: str | None = None) -> list[dict]:
    return [r for r in tracking(hub) if r["event-id"] == event and (message_id is None or r["message-id"] == message_id)]


async def send_out(hub, to: list[str], message_id: str, sender: str = "alice@contoso.com", options=None, **kw):
    recipients = {r: list(options or []) for r in to}
    msg = make_message(message_id=message_id, sender=sender or "alice@contoso.com", to=", ".join(to), **kw)
    return await send_dsn(hub.addresses[0][1], sender, recipients, msg, login=ALICE)


async def test_smart_host_delivery(tmp_path):
    sink = Sink()
    with SinkServer(sink) as port:
        async with running_hub(tmp_path, smart_host(port)) as hub:
            await send_out(hub, ["john@fabrikam.test", "jane@fabrikam.test"], "<out1@contoso.com>",
                           subject="To the partner")
            send = await wait_for(lambda: rows(hub, "SEND", "<out1@contoso.com>"))
            assert await hub.idle()
            assert hub.scheduler.queues["Smarthost"].delivery_type == "SmartHostConnectorDelivery"
            assert not hub.store.items()
    [got] = sink.received
    assert got.sender == "alice@contoso.com" and got.recipients == ["john@fabrikam.test", "jane@fabrikam.test"]
    assert b"Subject: To the partner" in got.content and got.content.startswith(b"Received: from ")
    assert send[0]["recipient-address"] == "john@fabrikam.test;jane@fabrikam.test"
    assert send[0]["recipient-status"] == "250 2.6.0 <sink> Queued mail for delivery"
    assert send[0]["connector-id"] == "Smarthost" and send[0]["source"] == "SMTP"


async def test_mx_routing_through_the_demo_zone(tmp_path):
    sink = Sink()
    with SinkServer(sink) as port:
        extra = {**FAST, "dns": {"zone_files": [mx_zone(tmp_path / "mx.zone")], "use_network": False},
                 "send_connectors": [{"name": "Internet", "address_spaces": ["*"], "port": port}]}
        async with running_hub(tmp_path, extra) as hub:
            await send_out(hub, ["john@fabrikam.test"], "<mx@contoso.com>")
            await send_out(hub, ["someone@a-only.test"], "<a@contoso.com>")
            await send_out(hub, ["nobody@no-such-domain.test"], "<nx@contoso.com>", subject="1")
            await send_out(hub, ["nobody@nullmx.test"], "<null-mx@contoso.com>", subject="2")
            await wait_for(lambda: len(rows(hub, "SEND")) == 2 and len(rows(hub, "FAIL")) == 2)
            await wait_for(lambda: len(messages(hub, "alice@contoso.com")) == 2)
            assert await hub.idle()
            ndr, null_mx = sorted(messages(hub, "alice@contoso.com"), key=lambda m: b"Undeliverable: 2" in m)
            assert {q: hub.scheduler.queues[q].delivery_type for q in ("fabrikam.test", "a-only.test")} == \
                {"fabrikam.test": "DnsConnectorDelivery", "a-only.test": "DnsConnectorDelivery"}
    assert sorted(r.recipients[0] for r in sink.received) == ["john@fabrikam.test", "someone@a-only.test"]
    assert "mx.fabrikam.test [127.0.0.1]" in rows(hub, "SEND", "<mx@contoso.com>")[0]["custom-data"]
    assert "a-only.test [127.0.0.1]" in rows(hub, "SEND", "<a@contoso.com>")[0]["custom-data"]
    _, _, groups, _ = report_parts(ndr)
    assert groups[1]["Final-Recipient"] == "rfc822;nobody@no-such-domain.test"
    assert groups[1]["Status"] == "5.4.4" and "Remote-MTA" not in groups[1]  # no next hop answered
    assert groups[1]["Diagnostic-Code"] == "smtp;550 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain"
    _, _, groups, _ = report_parts(null_mx)
    assert groups[1]["Status"] == "5.1.10"  # RFC 7505: the domain says it takes no mail


async def test_dsn_requests_are_passed_to_a_next_hop_that_offers_dsn(tmp_path):
    partner = {"accepted_domains": [{"domain": "fabrikam.test", "type": "Authoritative"}],
               "mailboxes": [{"address": "john@fabrikam.test"}], "receive": {"fqdn": "mx.fabrikam.test"}}
    for side in ("fabrikam", "contoso"):
        (tmp_path / side).mkdir()
    async with running_hub(tmp_path / "fabrikam", partner) as fabrikam:
        async with running_hub(tmp_path / "contoso", smart_host(fabrikam.addresses[0][1])) as hub:
            await send_out(hub, ["john@fabrikam.test"], "<pass@contoso.com>",
                           options=["NOTIFY=SUCCESS", "ORCPT=rfc822;John@fabrikam.test"])
            await wait_for(lambda: messages(fabrikam, "john@fabrikam.test"))
            report = await wait_for(lambda: fabrikam.store.items("queue='Unreachable'"))
            assert await hub.idle() and await fabrikam.idle()
            assert messages(hub, "alice@contoso.com") == []  # no "relayed" notice: the next hop reports
            [item] = report
            delivered = fabrikam.store.load_message(item.message)
    assert delivered.sender == "" and [r.address for r in delivered.recipients] == ["alice@contoso.com"]
    _, _, groups, _ = report_parts(delivered.raw)
    assert groups[0]["Reporting-MTA"] == "dns;mx.fabrikam.test"
    assert groups[1]["Action"] == "delivered" and groups[1]["Original-Recipient"] == "rfc822;John@fabrikam.test"


async def test_4xx_is_retried_then_delivered_and_listed_meanwhile(tmp_path):
    sink = Sink(data_replies=["451 4.3.0 Try again later"])
    clock = FakeClock()
    with SinkServer(sink) as port:
        default_retry = {**smart_host(port), "queue": {"admin_poll_interval": 0.05}}  # Exchange's 5 min
        async with running_hub(tmp_path, default_retry, clock=clock) as hub:
            await send_out(hub, ["john@fabrikam.test"], "<retry@contoso.com>")
            defer = await wait_for(lambda: rows(hub, "DEFER", "<retry@contoso.com>"))
            assert defer[0]["recipient-status"] == "451 4.3.0 Try again later"
            listed = json.loads(run_cli("queue", "list", "-c", str(tmp_path / "transport.yaml"), "--json").stdout)
            smarthost = [q for q in listed if q["identity"].endswith("\\Smarthost")]
            assert smarthost and smarthost[0]["delivery_type"] == "SmartHostConnectorDelivery"
            assert smarthost[0]["last_error"] == "451 4.3.0 Try again later"
            clock.advance(299)  # transient_failure_retry_interval is 300
            await scheduler_ticks(hub)
            assert hub.store.items("status='Retry'") and not hub.scheduler.inflight  # not tried again yet
            clock.advance(1)
            await wait_for(lambda: rows(hub, "SEND", "<retry@contoso.com>"))
            assert await hub.idle()
    assert len(sink.received) == 1 and messages(hub, "alice@contoso.com") == []


@pytest.mark.parametrize("sink", [
    Sink(data_replies=["2xx what"]),  # no SMTP reply at all: aiosmtplib reads it as code -1
    Sink(data_replies=["354 go on"]),  # a reply, but not one that ends DATA
    Sink(rcpt_replies={"john@fabrikam.test": "252 2.1.5 Cannot VRFY user, but will accept message"}),
], ids=["malformed", "354 to the end of DATA", "252 to RCPT"])
async def test_a_reply_that_accepts_nothing_is_retried_never_counted_as_sent(tmp_path, sink):
    """A next hop's reply that is not a 2xx where the hub needs one, and not a 4xx or 5xx either, accepted
    nothing the hub can know of: the recipient waits in Retry. Such replies used to count as delivered (every
    code below 400 did), and the message was tracked as sent and removed from the queue without being sent."""
    with SinkServer(sink) as port:
        async with running_hub(tmp_path, smart_host(port)) as hub:
            await send_out(hub, ["john@fabrikam.test"], "<odd@contoso.com>")
            [defer] = await wait_for(lambda: rows(hub, "DEFER", "<odd@contoso.com>"))
            assert await hub.idle()
            assert defer["recipient-status"].startswith("451 4.4.0 the next hop's reply was not what SMTP allows here: ")
            assert not rows(hub, "SEND", "<odd@contoso.com>")
            assert [i.status for i in hub.store.items()] == ["Retry"]
    assert sink.received == []


async def test_5xx_fails_those_recipients_with_an_ndr(tmp_path):
    sink = Sink(rcpt_replies={"ghost@fabrikam.test": "550 5.1.1 User unknown"})
    with SinkServer(sink) as port:
        async with running_hub(tmp_path, smart_host(port)) as hub:
            await send_out(hub, ["john@fabrikam.test", "ghost@fabrikam.test"], "<mixed@contoso.com>",
                           subject="Mixed", options=["NOTIFY=FAILURE", "ORCPT=rfc822;ghost@fabrikam.test"])
            [raw] = await wait_for(lambda: messages(hub, "alice@contoso.com"))
            assert await hub.idle()
    assert [r.recipients for r in sink.received] == [["john@fabrikam.test"]]
    assert rows(hub, "SEND", "<mixed@contoso.com>")[0]["recipient-address"] == "john@fabrikam.test"
    fail = rows(hub, "FAIL", "<mixed@contoso.com>")
    assert [(f["recipient-address"], f["recipient-status"]) for f in fail] == [("ghost@fabrikam.test", "550 5.1.1 User unknown")]
    report, human, groups, original = report_parts(raw)
    assert report["Subject"] == "Undeliverable: Mixed" and report["Return-Path"] == "<>"
    assert "Remote server returned '550 5.1.1 User unknown'" in human.get_payload()
    [ghost] = groups[1:]
    assert ghost["Final-Recipient"] == "rfc822;ghost@fabrikam.test" and ghost["Action"] == "failed"
    assert ghost["Status"] == "5.1.1" and ghost["Diagnostic-Code"] == "smtp;550 5.1.1 User unknown"
    assert ghost["Remote-MTA"] == "dns;127.0.0.1"
    assert ghost["Original-Recipient"] == "rfc822;ghost@fabrikam.test"
    assert original.get_payload()[0]["Message-ID"] == "<mixed@contoso.com>"
    assert len(rows(hub, "DSN", "<mixed@contoso.com>")) == 1


async def test_notify_never_and_the_null_sender_get_no_report(tmp_path):
    sink = Sink(rcpt_replies={"ghost@fabrikam.test": "550 5.1.1 User unknown"})
    with SinkServer(sink) as port:
        async with running_hub(tmp_path, smart_host(port)) as hub:
            await send_out(hub, ["ghost@fabrikam.test"], "<never@contoso.com>", options=["NOTIFY=NEVER"])
            await send_out(hub, ["ghost@fabrikam.test"], "<null@contoso.com>", sender="")
            await wait_for(lambda: len(rows(hub, "FAIL")) == 2)
            assert await hub.idle()
            await scheduler_ticks(hub)
            assert await hub.idle()
            assert not hub.store.items()
    assert rows(hub, "DSN") == [] and messages(hub, "alice@contoso.com") == []


async def test_a_loop_is_stopped_by_the_hop_count(tmp_path):
    port = free_port()  # the hub is its own smart host
    extra = {**smart_host(port), "receive": {"bindings": [f"127.0.0.1:{port}"],
                                             "permission_groups": ["AnonymousUsers", "ExchangeUsers", "ExchangeServers"]}}
    async with running_hub(tmp_path, extra) as hub:
        await send_out(hub, ["john@fabrikam.test"], "<loop@contoso.com>", subject="Round and round")
        [raw] = await wait_for(lambda: messages(hub, "alice@contoso.com"), timeout=20)
        assert await hub.idle()
    fail = rows(hub, "FAIL", "<loop@contoso.com>")
    assert [f["recipient-status"] for f in fail] == ["554 5.4.6 Hop count exceeded - possible mail loop"]
    assert len(rows(hub, "SEND", "<loop@contoso.com>")) == 29  # 30 Received lines: the 30th hop is refused
    _, _, groups, _ = report_parts(raw)
    assert groups[1]["Status"] == "5.4.6" and groups[1]["Final-Recipient"] == "rfc822;john@fabrikam.test"


async def test_several_messages_to_one_next_hop_share_one_connection(tmp_path):
    sink = Sink(hold=threading.Event())
    with SinkServer(sink) as port:
        async with running_hub(tmp_path, smart_host(port)) as hub:
            await send_out(hub, ["john@fabrikam.test"], "<c0@contoso.com>")
            await wait_for(lambda: sink.in_data == 1)  # the first message holds the connection in DATA
            for i in range(1, 5):
                await send_out(hub, ["john@fabrikam.test"], f"<c{i}@contoso.com>")
            queue = hub.scheduler.queues["Smarthost"]
            await wait_for(lambda: queue.feed.qsize() == 4)
            sink.hold.set()
            await wait_for(lambda: len(rows(hub, "SEND")) == 5)
            assert await hub.idle()
            assert queue.connections == 1
    assert len(sink.received) == 5 and len(sink.sessions) == 1


async def test_notify_success_to_a_server_without_dsn_gets_a_relayed_notice(tmp_path):
    sink = Sink()
    with SinkServer(sink) as port:
        async with running_hub(tmp_path, smart_host(port)) as hub:
            await send_out(hub, ["john@fabrikam.test"], "<relay@contoso.com>", subject="Hi",
                           options=["NOTIFY=SUCCESS,FAILURE"])
            [raw] = await wait_for(lambda: messages(hub, "alice@contoso.com"))
            assert await hub.idle()
    report, _, groups, _ = report_parts(raw)
    assert report["Subject"] == "Relayed: Hi"
    assert groups[1]["Action"] == "relayed" and groups[1]["Status"] == "2.6.0"  # the smart host's own status
    assert groups[1]["Diagnostic-Code"] == "smtp;250 2.6.0 <sink> Queued mail for delivery"
    assert sink.received[0].rcpt_options == [[]]  # the sink offers no DSN: NOTIFY is not passed on


async def test_a_message_over_the_connectors_size_limit_fails_without_being_sent(tmp_path):
    sink = Sink()
    with SinkServer(sink) as port:
        async with running_hub(tmp_path, smart_host(port, max_message_size=200)) as hub:
            await send_out(hub, ["john@fabrikam.test"], "<big@contoso.com>", body="x" * 500 + "\r\n")
            [raw] = await wait_for(lambda: messages(hub, "alice@contoso.com"))
            assert await hub.idle()
    assert sink.received == []
    _, _, groups, _ = report_parts(raw)
    assert groups[1]["Status"] == "5.3.4"
    assert groups[1]["Diagnostic-Code"] == ("smtp;550 5.3.4 ROUTING.SizeLimit; message size exceeds fixed maximum size"
                                            " for route")

