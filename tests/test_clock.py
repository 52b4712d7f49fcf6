"""Time-driven promises asserted to the second on the hub's clock (`Hub(clock=...)`, a FakeClock the test moves):
the retry schedule, the delay notice, expiry, log retention and the counters' saves, with Exchange's default
intervals, without waiting for any of them. Each step moves the clock to one second before the moment the
promise names, lets the part that would act look again (`scheduler_ticks`, `housekeeping_rounds`) to show that
nothing happened yet, then to the moment itself."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from dsntools import report_parts, send_dsn
from hubtools import (PASSWORD, FakeClock, agent, free_port, housekeeping_rounds, make_message, messages, running_hub,
                      scheduler_ticks, send, tracking, wait_for)
from transport.core.logfile import log_files

DAY = 86400
ALICE = ("alice@contoso.com", PASSWORD)


def unreachable_smart_host() -> dict:
    """Every remote recipient goes to a smart host on a loopback port nothing listens on (451 4.4.1 each time);
    the scheduler looks often (the pace of its looking, not a timeout)."""
    return {"send_connectors": [{"name": "Smarthost", "address_spaces": ["*"], "smart_hosts": [f"127.0.0.1:{free_port()}"]}],
            "queue": {"admin_poll_interval": 0.05}}


async def send_out(hub, message_id: str, subject: str = "Lost") -> None:
    msg = make_message(subject=subject, message_id=message_id, sender="alice@contoso.com", to="john@fabrikam.test")
    await send_dsn(hub.addresses[0][1], "alice@contoso.com", {"john@fabrikam.test": []}, msg, login=ALICE)


def at(stamp: str) -> float:
    """A log row's date-time as seconds since the epoch."""
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def rows(hub, event: str, message_id: str) -> list[dict]:
    return [r for r in tracking(hub) if r["event-id"] == event and r["message-id"] == message_id]


def retrying(hub, attempts: int) -> list:
    return [i for i in hub.store.items("status='Retry'") if i.attempts == attempts]


async def test_the_retry_schedule_quick_retries_then_the_outbound_interval(tmp_path):
    """README: "Retry follows Exchange's schedule: `transient_failure_retry_count` (6) retries every
    `transient_failure_retry_interval` (5 min), then every `outbound_connection_failure_retry_interval` (10 min)"."""
    clock = FakeClock()
    async with running_hub(tmp_path, unreachable_smart_host(), clock=clock) as hub:
        await send_out(hub, "<s@contoso.com>")
        waits = []
        for attempt in range(1, 9):
            [item] = await wait_for(lambda: retrying(hub, attempt))
            waits.append(item.next_attempt - clock())
            clock.set(item.next_attempt - 1)
            await scheduler_ticks(hub)
            assert retrying(hub, attempt) and not hub.scheduler.inflight, f"attempt {attempt + 1} came a second early"
            clock.set(item.next_attempt)
        await wait_for(lambda: retrying(hub, 9))
        defers = [at(r["date-time"]) for r in rows(hub, "DEFER", "<s@contoso.com>")]
    assert waits == [300] * 6 + [600] * 2
    assert [b - a for a, b in zip(defers, defers[1:])] == [300] * 6 + [600] * 2
    assert len(defers) == 9


async def test_the_delay_notice_at_four_hours_and_expiry_at_two_days_with_a_447_ndr(tmp_path):
    """README: a message still queued after `delay_notification_timeout` (4 h) gets its sender a delay DSN, whose
    Will-Retry-Until is its arrival plus `message_expiration_timeout` (2 d); at that age it fails with
    `550 4.4.7 QUEUE.Expired` and an NDR."""
    clock = FakeClock()
    arrival = clock()
    async with running_hub(tmp_path, unreachable_smart_host(), clock=clock) as hub:
        await send_out(hub, "<gone@contoso.com>")
        await wait_for(lambda: retrying(hub, 1))
        clock.set(arrival + 4 * 3600 - 1)
        await scheduler_ticks(hub)
        assert rows(hub, "DSN", "<gone@contoso.com>") == [] and messages(hub, "alice@contoso.com") == []
        clock.set(arrival + 4 * 3600)
        [delay] = await wait_for(lambda: messages(hub, "alice@contoso.com"))
        clock.set(arrival + 2 * DAY - 1)
        await scheduler_ticks(hub)
        assert rows(hub, "FAIL", "<gone@contoso.com>") == [] and len(messages(hub, "alice@contoso.com")) == 1
        assert hub.store.items("queue='Smarthost'")
        clock.set(arrival + 2 * DAY)
        reports = await wait_for(lambda: len(messages(hub, "alice@contoso.com")) == 2 and messages(hub, "alice@contoso.com"))
        assert await hub.idle()
        assert hub.store.items() == []
    report, _, groups, original = report_parts(delay)
    assert report["Subject"] == "Delivery delayed: Lost" and original.get_content_type() == "text/rfc822-headers"
    assert parsedate_to_datetime(report["Date"]).timestamp() == arrival + 4 * 3600
    assert parsedate_to_datetime(groups[0]["Arrival-Date"]).timestamp() == arrival
    assert groups[1]["Action"] == "delayed" and groups[1]["Status"] == "4.4.1"
    assert parsedate_to_datetime(groups[1]["Will-Retry-Until"]).timestamp() == arrival + 2 * DAY
    [ndr] = [r for r in reports if r != delay]
    report, _, groups, _ = report_parts(ndr)
    assert report["Subject"] == "Undeliverable: Lost"
    assert groups[1]["Action"] == "failed" and groups[1]["Status"] == "4.4.7"
    assert groups[1]["Diagnostic-Code"] == "smtp;550 4.4.7 QUEUE.Expired; message expired"
    defers = rows(hub, "DEFER", "<gone@contoso.com>")
    assert all(d["recipient-status"].startswith("451 4.4.1 ") for d in defers)
    assert [at(d["date-time"]) for d in defers] == [arrival, arrival + 4 * 3600 - 1, arrival + 2 * DAY - 1]  # due then
    [dsn_delay, dsn_ndr] = rows(hub, "DSN", "<gone@contoso.com>")
    [fail] = rows(hub, "FAIL", "<gone@contoso.com>")
    assert [at(dsn_delay["date-time"]), at(fail["date-time"])] == [arrival + 4 * 3600, arrival + 2 * DAY]
    assert fail["recipient-status"].startswith("550 4.4.7 QUEUE.Expired") and at(dsn_ndr["date-time"]) == arrival + 2 * DAY


async def test_a_message_retried_in_the_mailbox_queue_is_delivered_at_its_next_slot(tmp_path):
    """A transient mailbox failure (`432 4.2.0`) waits `transient_failure_retry_interval` (5 min): the mended
    mailbox gets the message at that minute, not a second before."""
    clock = FakeClock()
    async with running_hub(tmp_path, {"queue": {"admin_poll_interval": 0.05}}, clock=clock) as hub:
        box = hub.config.data_root / "mailboxes" / "alice@contoso.com"
        os.rename(box, box.with_name("mended"))
        box.write_text("not a folder")  # a Maildir that is a file: delivery fails transiently
        await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<r@t>"))
        [item] = await wait_for(lambda: retrying(hub, 1))
        assert item.last_error.startswith("432 4.2.0") and item.next_attempt == clock() + 300
        box.unlink()
        os.rename(box.with_name("mended"), box)
        clock.advance(299)
        await scheduler_ticks(hub)
        assert retrying(hub, 1) and not hub.scheduler.inflight  # not tried again yet
        clock.advance(1)
        await wait_for(lambda: messages(hub, "alice@contoso.com"))
        assert await hub.idle()
        assert hub.store.items() == []
        [defer] = rows(hub, "DEFER", "<r@t>")
        [deliver] = rows(hub, "DELIVER", "<r@t>")
    assert defer["recipient-status"].startswith("432 4.2.0") and at(defer["date-time"]) == item.next_attempt - 300
    assert at(deliver["date-time"]) == item.next_attempt


async def test_tracking_and_agent_log_files_past_their_max_age_go_at_the_days_rollover(tmp_path):
    """README: "files older than `tracking.max_age_days` (30) are removed" (and the agent log's after
    `agent_log.max_age_days`, 7): when the clock's day turns, the next row opens the new day's file and the files
    older than the maximum age at that moment go."""
    clock = FakeClock()
    midnight = (int(clock()) // DAY + 1) * DAY
    clock.set(midnight - 60)
    logs = tmp_path / "data" / "logs"
    ages = {("MessageTracking", "MSGTRK", 30): ("20250101", "20250102"), ("AgentLog", "AGENTLOG", 7): ("20250101", "20250102")}
    for (folder, prefix, max_age), (older, younger) in ages.items():
        (logs / folder).mkdir(parents=True)
        for day, mtime in ((older, midnight - max_age * DAY - 1), (younger, midnight - max_age * DAY + 1)):
            path = logs / folder / f"{prefix}{day}-1.log"
            path.write_text("#Software: Exchange Transport Simulator\r\n")
            os.utime(path, (mtime, mtime))
    today, tomorrow = (time.strftime("%Y%m%d", time.gmtime(t)) for t in (midnight - 1, midnight))

    def names(folder: str, prefix: str) -> list[str]:
        return [p.name for p in log_files(logs / folder, prefix)]

    extra = {"agents": [agent("hubtools:Crash", 1, events=["on_rcpt_to"])]}  # one agent log row per message
    async with running_hub(tmp_path, extra, clock=clock) as hub:
        for n, when in enumerate((midnight - 60, midnight - 1, midnight)):
            clock.set(when)
            await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"],
                       make_message(message_id=f"<day{n}@t>"))
            await wait_for(lambda: len(messages(hub, "alice@contoso.com")) == n + 1)
            assert await hub.idle()
            if when < midnight:  # the files are as old as the maximum age at most: all kept
                for (folder, prefix, _), (older, younger) in ages.items():
                    assert names(folder, prefix) == [f"{prefix}{older}-1.log", f"{prefix}{younger}-1.log",
                                                     f"{prefix}{today}-1.log"]
    for (folder, prefix, _), (older, younger) in ages.items():
        assert names(folder, prefix) == [f"{prefix}{younger}-1.log", f"{prefix}{today}-1.log", f"{prefix}{tomorrow}-1.log"]
    [row] = [r for r in tracking(hub) if r["message-id"] == "<day2@t>" and r["event-id"] == "RECEIVE"]
    assert at(row["date-time"]) == midnight


async def test_the_counters_are_saved_every_two_seconds_of_the_clock(tmp_path):
    """README: "The running hub writes a snapshot to `logs/counters.json` every couple of seconds" (2 s on the
    hub's clock) and at shutdown."""
    clock = FakeClock()
    start = clock()
    async with running_hub(tmp_path, clock=clock) as hub:
        path = hub.counters_path
        clock.set(start + 1)
        await housekeeping_rounds(hub)
        assert not path.exists()
        clock.set(start + 2)
        await wait_for(path.exists)
        first = json.loads(path.read_text())
        hub.counters.increment("MSExchangeTransport SmtpReceive", "Messages Received Total")
        clock.set(start + 3)
        await housekeeping_rounds(hub)
        assert json.loads(path.read_text()) == first
        clock.set(start + 4)
        await wait_for(lambda: json.loads(path.read_text())["written"] == start + 4)
        second = json.loads(path.read_text())
        clock.set(start + 10)
    assert (first["started"], first["written"], first["counters"]) == (start, start + 2, {})
    assert second["counters"] == {"MSExchangeTransport SmtpReceive": {"Messages Received Total": 1}}
    assert json.loads(path.read_text())["written"] == second["written"]  # nothing changed since: not written again
