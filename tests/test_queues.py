"""Queues with Exchange semantics: poison, retry and expiry, administration, back pressure, kill -9 safety."""

from __future__ import annotations

import asyncio
import json
import signal
import smtplib
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hubtools import (FakeClock, HubProcess, agent, free_port, make_message, messages, run_cli, running_hub, send, send_sync,
                      scheduler_ticks, tracking, wait_file, wait_for, write_config)

FAST_RETRY = {"queue": {"admin_poll_interval": 0.1}}  # the scheduler looks often; retries keep Exchange's intervals


def _seconds(stamp: str) -> float:
    """A tracking row's date-time as seconds since the epoch."""
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def rows_for(hub, event: str, message_id: str) -> list[dict]:
    return [r for r in tracking(hub) if r["event-id"] == event and r["message-id"] == message_id]


async def test_agent_crashing_twice_sends_message_to_poison_and_hub_keeps_serving(tmp_path):
    extra = {"agents": [agent("hubtools:RouteTrace", on_error="fail_closed", crash_at="on_submitted")],
             "queue": {"admin_poll_interval": 0.1}}
    async with running_hub(tmp_path, extra) as hub:
        port = hub.addresses[0][1]
        await send(port, "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<poison@t>"))
        await wait_for(lambda: rows_for(hub, "POISONMESSAGE", "<poison@t>"), timeout=10)
        poison = hub.store.items("queue='Poison'")
        assert len(poison) == 1 and poison[0].crash_count == 2 and poison[0].status == "Suspended"
        # the hub still answers, and the crash was recorded in the tracking log as a SUBMIT per attempt
        refused, reply = await send(port, "john@fabrikam.test", ["bob@contoso.com"], make_message(message_id="<ok@t>"))
        assert reply[0] == 250
        assert len(rows_for(hub, "SUBMIT", "<poison@t>")) == 2
        assert messages(hub, "alice@contoso.com") == []


async def test_crash_left_in_process_counts_at_restart(tmp_path):
    """A message found "in process" at start-up counts one crash; at the threshold it goes to Poison."""
    extra = {"queue": {"poison_threshold": 1}, "agents": [agent("hubtools:RouteTrace")]}
    async with running_hub(tmp_path, extra) as hub:
        hub.categorizer.push = lambda item: None  # received and committed, never categorized
        await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<p@t>"))
        await hub.store.mark_in_process([1])  # as the categorizer does before running agents
    async with running_hub(tmp_path, extra) as hub:
        assert [i.queue for i in hub.store.items()] == ["Poison"]
        assert rows_for(hub, "POISONMESSAGE", "<p@t>")


async def test_retry_then_delay_dsn_then_expiry(tmp_path):
    """The mailbox queue on Exchange's clock: retried every 5 min, a delay DSN at 4 h, expired at 2 d (the exact
    moments over SMTP are in test_clock.py)."""
    clock = FakeClock()
    arrival = clock()
    async with running_hub(tmp_path, {"queue": {"admin_poll_interval": 0.05}}, clock=clock) as hub:
        box = hub.config.data_root / "mailboxes" / "alice@contoso.com"
        import shutil
        shutil.rmtree(box)
        box.write_text("not a folder")
        await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<x@t>"))
        for attempts in (1, 2, 3):
            [item] = await wait_for(lambda: [i for i in hub.store.items("status='Retry'") if i.attempts == attempts])
            assert item.next_attempt == arrival + attempts * 300
            clock.set(item.next_attempt)
        await wait_for(lambda: len(rows_for(hub, "DEFER", "<x@t>")) == 4)
        assert rows_for(hub, "DSN", "<x@t>") == []
        clock.set(arrival + 4 * 3600)
        await wait_for(lambda: rows_for(hub, "DSN", "<x@t>"))
        clock.set(arrival + 2 * 86400)
        fail = await wait_for(lambda: rows_for(hub, "FAIL", "<x@t>"))
        assert fail[0]["recipient-status"].startswith("550 4.4.7 QUEUE.Expired")
        assert _seconds(fail[0]["date-time"]) == arrival + 2 * 86400
        assert [_seconds(r["date-time"]) for r in rows_for(hub, "DEFER", "<x@t>")][:4] == [
            arrival, arrival + 300, arrival + 600, arrival + 900]
        assert await hub.idle()  # only the two reports to the remote sender are left, in Unreachable
        await wait_for(lambda: [i.queue for i in hub.store.items()] == ["Unreachable", "Unreachable"])


def _cli_json(config: Path, *args: str):
    result = run_cli(*args, "-c", str(config), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def test_queue_commands_against_running_hub(tmp_path):
    async with running_hub(tmp_path, FAST_RETRY) as hub:
        config = tmp_path / "transport.yaml"
        port = hub.addresses[0][1]
        out = await asyncio.to_thread(_cli_json, config, "queue", "suspend", "mailbox")
        assert out == {"queue": "mailbox", "status": "Suspended"}
        await wait_for(lambda: hub.scheduler.suspended == {"mailbox"})
        await send(port, "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<q1@t>"))
        await wait_for(lambda: hub.store.items("queue='mailbox'"))
        await scheduler_ticks(hub)
        queues = await asyncio.to_thread(_cli_json, config, "queue", "list")
        by_name = {q["identity"].split("\\")[1]: q for q in queues}
        assert by_name["Submission"]["message_count"] == 0
        listed = await asyncio.to_thread(_cli_json, config, "queue", "messages", "mailbox")
        assert [m["message_id"] for m in listed] == ["<q1@t>"] and listed[0]["status"] == "Ready"
        assert by_name["mailbox"]["status"] == "Suspended"
        assert messages(hub, "alice@contoso.com") == []
        # suspend the message too, export it, then resume queue and message: it is delivered
        ident = listed[0]["identity"]
        assert (await asyncio.to_thread(_cli_json, config, "message", "suspend", ident))["status"] == "Suspended"
        out = await asyncio.to_thread(_cli_json, config, "queue", "resume", "mailbox")
        assert out["status"] == "Ready"
        await scheduler_ticks(hub)
        assert messages(hub, "alice@contoso.com") == []  # the message itself is still suspended
        await asyncio.to_thread(_cli_json, config, "message", "resume", ident)
        await wait_for(lambda: messages(hub, "alice@contoso.com"), timeout=5)


async def test_message_remove_and_unreachable_resubmit(tmp_path):
    async with running_hub(tmp_path, FAST_RETRY) as hub:
        config = tmp_path / "transport.yaml"
        port = hub.addresses[0][1]
        # an authenticated user relays outside: no send connector, so the message waits in Unreachable
        await send(port, "alice@contoso.com", ["x@fabrikam.test"], make_message(message_id="<u@t>"),
                   login=("alice@contoso.com", "Passw0rd!"))
        await wait_for(lambda: hub.store.items("queue='Unreachable'"))
        queues = await asyncio.to_thread(_cli_json, config, "queue", "list")
        assert any(q["identity"].endswith("\\Unreachable") and q["message_count"] == 1 for q in queues)
        result = await asyncio.to_thread(run_cli, "queue", "retry", "Unreachable", "-c", str(config))
        assert result.returncode == 1 and "--resubmit" in result.stderr
        out = await asyncio.to_thread(_cli_json, config, "queue", "retry", "Unreachable", "--resubmit")
        assert out["messages"] == 1
        # recategorized, still no route: back in Unreachable, with a second SUBMIT in the tracking log
        await wait_for(lambda: len(rows_for(hub, "SUBMIT", "<u@t>")) == 2, timeout=5)
        await wait_for(lambda: hub.store.items("queue='Unreachable'"))
        ident = (await asyncio.to_thread(_cli_json, config, "queue", "messages", "Unreachable"))[0]["identity"]
        out = await asyncio.to_thread(_cli_json, config, "message", "remove", ident, "--with-ndr")
        assert out["removed"] is True and out["with_ndr"] is True
        [ndr] = await wait_for(lambda: messages(hub, "alice@contoso.com"))  # the running hub sends the NDR
        assert b"Status: 5.7.1" in ndr and b"Diagnostic-Code: smtp;550 5.7.1 Message deleted by administrator" in ndr
        await wait_for(lambda: hub.store.items() == [])
        assert rows_for(hub, "FAIL", "<u@t>")[0]["source"] == "ADMIN"
        assert len(rows_for(hub, "DSN", "<u@t>")) == 1
        # the NDR was categorized and delivered once, though it was made in the tick that re-read the queues
        [report] = [r["message-id"] for r in tracking(hub) if r["source"] == "DSN" and r["event-id"] == "RECEIVE"]
        assert [r["event-id"] for r in tracking(hub) if r["message-id"] == report] == ["RECEIVE", "SUBMIT", "DELIVER"]


def test_queue_commands_against_stopped_hub(tmp_path):
    config = write_config(tmp_path, {"receive": {"bindings": [f"127.0.0.1:{free_port()}"]}})
    result = run_cli("queue", "list", "-c", str(config))
    assert result.returncode == 1 and "no queue database" in result.stderr
    hub = HubProcess(config).start()  # a first run makes the queue database
    hub.signal(signal.SIGTERM)
    assert hub.wait() == 0
    hub.stop()
    assert run_cli("queue", "suspend", "mailbox", "-c", str(config)).returncode == 0  # while no hub runs
    hub = HubProcess(config).start()  # a queue suspended while the hub was stopped stays suspended from its start
    try:
        port = int(hub.ready_line.split("127.0.0.1:")[1].split(";")[0])
        send_sync(port, "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<s@t>"))
    finally:
        hub.signal(signal.SIGTERM)
        assert hub.wait() == 0
        hub.stop()
    listed = _cli_json(config, "queue", "messages")
    assert [(m["queue"], m["message_id"]) for m in listed] == [("mailbox", "<s@t>")]
    ident = listed[0]["identity"]
    text = run_cli("queue", "list", "-c", str(config)).stdout
    assert "hub.contoso.com\\mailbox" in text and "Suspended" in text
    assert _cli_json(config, "message", "suspend", ident)["status"] == "Suspended"
    exported = tmp_path / "out.eml"
    _cli_json(config, "message", "export", ident, "--path", str(exported))
    assert b"X-Receiver: <alice@contoso.com>" in exported.read_bytes()
    assert _cli_json(config, "message", "remove", ident)["removed"] is True
    assert _cli_json(config, "queue", "messages") == []


def test_the_internal_id_of_the_250_reply_is_the_identity_everywhere(tmp_path):
    """One number per message: the 250's InternalId names it in every queue command, in the tracking log, and
    after a resubmit and a restart (the queue-qualified form works too)."""
    config = write_config(tmp_path, {"receive": {"bindings": [f"127.0.0.1:{free_port()}"]}})
    hub = HubProcess(config).start()
    try:
        port = int(hub.ready_line.split("127.0.0.1:")[1].split(";")[0])
        send_sync(port, "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<first@t>"))
        _, reply = send_sync(port, "alice@contoso.com", ["x@fabrikam.test"], make_message(message_id="<id@t>"),
                             login=("alice@contoso.com", "Passw0rd!"))
        internal_id = int(reply[1].decode().split("InternalId=")[1].split(",")[0])
        assert internal_id == 2
        wait_file(lambda: _cli_json(config, "queue", "messages", "Unreachable"))
        assert _cli_json(config, "queue", "retry", "Unreachable", "--resubmit")["messages"] == 1
        wait_file(lambda: len(rows_for(tmp_path / "data", "SUBMIT", "<id@t>")) == 2)
    finally:
        hub.signal(signal.SIGTERM)
        assert hub.wait() == 0
        hub.stop()
    hub = HubProcess(config).start()  # a restart resubmits Unreachable once more
    hub.signal(signal.SIGTERM)
    assert hub.wait() == 0
    hub.stop()
    [listed] = _cli_json(config, "queue", "messages", "Unreachable")
    assert listed["identity"] == f"hub.contoso.com\\Unreachable\\{internal_id}"
    assert listed["internal_message_id"] == internal_id
    assert {r["internal-message-id"] for r in tracking(tmp_path / "data") if r["message-id"] == "<id@t>"} == {str(internal_id)}
    out = _cli_json(config, "message", "suspend", str(internal_id))
    assert out == {"identity": listed["identity"], "status": "Suspended", "queue": "Unreachable", "queues": ["Unreachable"]}
    exported = tmp_path / "id.eml"
    _cli_json(config, "message", "export", f"Unreachable\\{internal_id}", "--path", str(exported))
    assert b"X-Receiver: <x@fabrikam.test>" in exported.read_bytes()
    assert _cli_json(config, "message", "resume", listed["identity"])["status"] == "Ready"
    wrong = run_cli("message", "suspend", f"mailbox\\{internal_id}", "-c", str(config))
    assert wrong.returncode == 1
    assert f"message {internal_id} is not in the mailbox queue (it is in Unreachable)" in wrong.stderr


async def test_back_pressure_answers_452_and_recovers(tmp_path):
    gate = asyncio.Event()
    extra = {"queue": {"max_submission_queue_length": 2},
             "agents": [agent("hubtools:RouteTrace")]}  # a routing agent: messages wait in the Submission queue
    async with running_hub(tmp_path, extra) as hub:
        port = hub.addresses[0][1]
        original = hub.categorizer._categorize

        async def slow(item):
            await gate.wait()
            await original(item)

        hub.categorizer._categorize = slow
        for i in range(3):
            await send(port, "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id=f"<b{i}@t>"))
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            await send(port, "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<b3@t>"))
        assert refused.value.smtp_code == 452 and b"4.3.1 Insufficient system resources" in refused.value.smtp_error
        gate.set()
        await wait_for(lambda: len(messages(hub, "alice@contoso.com")) == 3)
        _, reply = await send(port, "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<b4@t>"))
        assert reply[0] == 250


async def test_with_no_routing_agent_a_message_is_committed_once_straight_into_its_delivery_queues(tmp_path):
    """Routed ahead of its commit: one commit puts it in the mailbox queue, with the rows a trip through the
    Submission queue writes."""
    gate = asyncio.Event()
    async with running_hub(tmp_path) as hub:
        original = hub.scheduler.queues["mailbox"]._deliver

        async def held(batch):
            await gate.wait()
            await original(batch)

        hub.scheduler.queues["mailbox"]._deliver = held
        await wait_for(lambda: not hub.store.pending_writes)  # the start-up's own writes
        commits = hub.store.commits
        _, reply = await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com", "bob@contoso.com"],
                              make_message(message_id="<ahead@t>"))
        assert reply[0] == 250
        assert hub.store.commits == commits + 1
        assert [(i.queue, i.recipients) for i in hub.store.items()] == [("mailbox", ["alice@contoso.com", "bob@contoso.com"])]
        both = "alice@contoso.com;bob@contoso.com"
        assert [(r["event-id"], r["recipient-address"]) for r in tracking(hub) if r["message-id"] == "<ahead@t>"] == [
            ("RECEIVE", both), ("SUBMIT", both)]
        gate.set()
        await wait_for(lambda: len(rows_for(hub, "DELIVER", "<ahead@t>")) == 2)
        assert len(messages(hub, "alice@contoso.com")) == len(messages(hub, "bob@contoso.com")) == 1


async def test_delivery_backlog_beyond_capacity_waits_in_the_store_and_is_delivered_once(tmp_path):
    """Memory stays bounded when delivery falls behind: what does not fit waits Ready in the store."""
    gate = asyncio.Event()

    def small(hub):
        hub.scheduler.queues["mailbox"].capacity = 4

    async with running_hub(tmp_path, {"queue": {"admin_poll_interval": 0.1}}, before_start=small) as hub:
        original = hub.scheduler.queues["mailbox"]._deliver

        async def held(batch):
            await gate.wait()
            await original(batch)

        hub.scheduler.queues["mailbox"]._deliver = held
        port = hub.addresses[0][1]
        for i in range(12):
            await send(port, "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id=f"<cap{i}@t>"))
        await wait_for(lambda: len(hub.store.items("queue='mailbox'")) == 12)
        assert hub.scheduler.queues["mailbox"].feed.qsize() + hub.scheduler.queues["mailbox"]._busy <= 4
        assert "mailbox" in hub.scheduler.overflow
        gate.set()
        await wait_for(lambda: len(messages(hub, "alice@contoso.com")) == 12, timeout=10)
        await wait_for(lambda: not hub.store.items())
        assert len(messages(hub, "alice@contoso.com")) == 12
        delivered = [r["message-id"] for r in tracking(hub) if r["event-id"] == "DELIVER"]
        assert sorted(delivered) == sorted(f"<cap{i}@t>" for i in range(12))


async def test_low_disk_answers_452_and_recovers_when_space_returns(tmp_path):
    async with running_hub(tmp_path, {"queue": {"min_free_disk_space": "100000000GB"}}) as hub:
        port = hub.addresses[0][1]
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            await send(port, "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<d0@t>"))
        assert refused.value.smtp_code == 452
        hub.config.queue.min_free_disk_space = 0  # as if space were freed
        hub.submission.check_disk()  # what the housekeeping task does twice a second
        _, reply = await send(port, "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<d1@t>"))
        assert reply[0] == 250
