"""What the README promises about queues, the queue commands, durations, tracking retention and `transport run`,
each checked over real SMTP, real subprocesses, a real queue database and real files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

from hubtools import (HubProcess, agent, events_for, make_message, messages, run_cli, running_hub, scheduler_ticks,
                      send, send_sync, tracking, wait_file, wait_for, write_config)
from transport.core.config import load_config

LOGIN = ("alice@contoso.com", "Passw0rd!")


def _cli_json(config: Path, *args: str):
    result = run_cli(*args, "-c", str(config), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _port(ready_line: str) -> int:
    return int(ready_line.split("127.0.0.1:")[1].split(";")[0])


def _broken_mailbox(hub, address: str = "alice@contoso.com") -> Path:
    """Make delivery to a mailbox fail transiently (its Maildir is a file); unlink the result to mend it."""
    import shutil

    box = hub.config.data_root / "mailboxes" / address
    shutil.rmtree(box)
    box.write_text("not a folder")
    return box


# -- transport run ---------------------------------------------------------------------------------------------


def test_sigint_stops_the_hub_cleanly_with_exit_0(tmp_path):
    """README: "`transport run [-c transport.yaml]` … start the hub; SIGINT/SIGTERM stop it cleanly (exit 0)"."""
    hub = HubProcess(write_config(tmp_path)).start()
    try:
        _, reply = send_sync(_port(hub.ready_line), "john@fabrikam.test", ["alice@contoso.com"],
                             make_message(message_id="<int@fabrikam.test>"))
        assert reply[0] == 250
        wait_file(lambda: messages(tmp_path / "data", "alice@contoso.com"))
        hub.signal(signal.SIGINT)
        assert hub.wait(15) == 0
        stderr = hub.proc.stderr.read()
        assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    finally:
        hub.stop()
    assert events_for(tracking(tmp_path / "data"), "<int@fabrikam.test>") == ["RECEIVE", "SUBMIT", "DELIVER"]


# -- the queues ------------------------------------------------------------------------------------------------


async def test_unreachable_is_resubmitted_at_start_and_delivered_once(tmp_path):
    """README: "`Unreachable` | recipients with no route … resubmitted at every start"; "Unreachable is resubmitted
    at every start, not on a configuration-change notification (the configuration is read at start)"."""
    async with running_hub(tmp_path) as hub:
        _, reply = await send(hub.addresses[0][1], "alice@contoso.com", ["dave@fabrikam.test"],
                              make_message(message_id="<later@t>"), login=LOGIN)
        assert reply[0] == 250
        await wait_for(lambda: hub.store.items("queue='Unreachable'"))
    # the organisation now has fabrikam.test and a mailbox for dave: the restart finds the route
    now_routable = {"accepted_domains": [{"domain": "contoso.com", "type": "Authoritative"},
                                         {"domain": "fabrikam.test", "type": "Authoritative"}],
                    "mailboxes": [{"address": "alice@contoso.com", "password": "Passw0rd!"},
                                  {"address": "dave@fabrikam.test"}]}
    async with running_hub(tmp_path, now_routable) as hub:
        await wait_for(lambda: messages(hub, "dave@fabrikam.test"))
        assert await hub.idle(), "the hub did not settle"
        await scheduler_ticks(hub)
        assert len(messages(hub, "dave@fabrikam.test")) == 1
        assert hub.store.items() == []
        rows = events_for(tracking(hub), "<later@t>")
        assert rows.count("DELIVER") == 1 and rows.count("SUBMIT") == 2


async def test_a_poison_message_waits_until_an_administrator_resumes_it_then_is_delivered_once(tmp_path):
    """README: "`Poison` | messages that crashed the categorizer `poison_threshold` times (default 2); never
    processed again unless an administrator resumes them"."""
    crashing = {"agents": [agent("hubtools:RouteTrace", on_error="fail_closed", crash_at="on_submitted")],
                "queue": {"admin_poll_interval": 0.1}}
    async with running_hub(tmp_path, crashing) as hub:
        await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<p@t>"))
        await wait_for(lambda: hub.store.items("queue='Poison'"), timeout=10)
        await scheduler_ticks(hub, 3)
        assert events_for(tracking(hub), "<p@t>").count("SUBMIT") == 2  # not tried again
    # the crashing agent is gone; a restart does not take the message out of Poison either
    async with running_hub(tmp_path, {"queue": {"admin_poll_interval": 0.1}}) as hub:
        await scheduler_ticks(hub, 3)
        assert [i.queue for i in hub.store.items()] == ["Poison"]
        assert messages(hub, "alice@contoso.com") == []
        assert events_for(tracking(hub), "<p@t>").count("SUBMIT") == 2
        config = tmp_path / "transport.yaml"
        [listed] = await asyncio.to_thread(_cli_json, config, "queue", "messages", "Poison")
        out = await asyncio.to_thread(_cli_json, config, "message", "resume", str(listed["internal_message_id"]))
        assert (out["status"], out["queue"]) == ("Ready", "Submission")
        await wait_for(lambda: messages(hub, "alice@contoso.com"))
        assert await hub.idle(), "the hub did not settle"
        await scheduler_ticks(hub)
        assert len(messages(hub, "alice@contoso.com")) == 1
        assert events_for(tracking(hub), "<p@t>").count("DELIVER") == 1
        assert hub.store.items() == []


async def test_plain_queue_retry_tries_retry_items_now(tmp_path):
    """README: "`transport queue retry QUEUE [--resubmit]` | `Retry-Queue [-Resubmit $true]` | try now"."""
    hour = {"queue": {"transient_failure_retry_interval": 3600, "admin_poll_interval": 0.1}}
    async with running_hub(tmp_path, hour) as hub:
        config = tmp_path / "transport.yaml"
        box = _broken_mailbox(hub)
        await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<rq@t>"))
        [waiting] = await wait_for(lambda: hub.store.items("status='Retry'"))
        assert waiting.next_attempt > time.time() + 3000  # next try in an hour
        box.unlink()
        await scheduler_ticks(hub)
        assert messages(hub, "alice@contoso.com") == []  # mended, but not tried before its time
        out = await asyncio.to_thread(_cli_json, config, "queue", "retry", "mailbox")
        assert out == {"queue": "mailbox", "messages": 1, "resubmit": False}
        await wait_for(lambda: messages(hub, "alice@contoso.com"))
        assert await hub.idle(), "the hub did not settle"
        assert events_for(tracking(hub), "<rq@t>").count("SUBMIT") == 1  # tried again, not recategorized
        assert hub.store.items() == []


async def test_message_remove_without_ndr_is_a_drop_row_from_admin(tmp_path):
    """README: "`DROP` | `ADMIN` | removed by an administrator without NDR" (with `--with-ndr`: `FAIL`, source
    `ADMIN`, tested in test_queues.py)."""
    async with running_hub(tmp_path, {"queue": {"admin_poll_interval": 0.1}}) as hub:
        config = tmp_path / "transport.yaml"
        await asyncio.to_thread(_cli_json, config, "queue", "suspend", "mailbox")
        await wait_for(lambda: hub.scheduler.suspended == {"mailbox"})
        _, reply = await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"],
                              make_message(message_id="<drop@t>"))
        internal_id = reply[1].decode().split("InternalId=")[1].split(",")[0]
        await wait_for(lambda: hub.store.items("queue='mailbox'"))
        out = await asyncio.to_thread(_cli_json, config, "message", "remove", internal_id)
        assert out == {"identity": internal_id, "removed": True, "with_ndr": False, "queue": "mailbox"}
        assert hub.store.items() == []
        await asyncio.to_thread(_cli_json, config, "queue", "resume", "mailbox")
        await scheduler_ticks(hub)
        assert messages(hub, "alice@contoso.com") == []
        rows = [r for r in tracking(hub) if r["message-id"] == "<drop@t>"]
        assert [r["event-id"] for r in rows] == ["RECEIVE", "SUBMIT", "DROP"]
        drop = rows[-1]
        assert (drop["source"], drop["recipient-address"], drop["source-context"], drop["custom-data"]) == (
            "ADMIN", "alice@contoso.com", "mailbox", "Remove-Message")


# -- durations ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30), ("5m", 300), ("4h", 4 * 3600), ("2d", 2 * 86400), ("1.02:03:04", 86400 + 2 * 3600 + 3 * 60 + 4),
    ("00:05:00", 300), ("90", 90), ("2.5", 2.5), ("'45'", 45), ("'10M'", 600),
])
def test_every_duration_format_of_the_readme(tmp_path, text, seconds):
    """README: "Durations take seconds, `30s`, `5m`, `4h`, `2d` or Exchange's `d.hh:mm:ss`"."""
    path = tmp_path / "transport.yaml"
    path.write_text(f"queue:\n  transient_failure_retry_interval: {text}\n  message_expiration_timeout: {text}\n")
    queue = load_config(path).queue
    assert queue.transient_failure_retry_interval == seconds and queue.message_expiration_timeout == seconds


@pytest.mark.parametrize("text", ["5 minutes", "1w", "1.2:3", "-5m", "h"])
def test_a_bad_duration_is_a_check_config_error_at_its_line(tmp_path, text):
    """README: "`transport check-config` … one `file:line: key: problem` per line and exit 1"."""
    path = tmp_path / "transport.yaml"
    path.write_text(f"organization:\n  name: Contoso\nqueue:\n  durable: false\n  delay_notification_timeout: {text}\n")
    result = run_cli("check-config", "-c", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line == (f"{path}:5: queue.delay_notification_timeout: {text!r} is not a duration "
                    "(use seconds, 30s, 5m, 4h, 2d or d.hh:mm:ss)")


# -- tracking retention -------------------------------------------------------------------------------------------


async def test_tracking_files_older_than_max_age_days_are_removed(tmp_path):
    """README: "files older than `tracking.max_age_days` (30) are removed"."""
    folder = tmp_path / "data" / "logs" / "MessageTracking"
    folder.mkdir(parents=True)
    day = 86400
    ages = {"MSGTRK20250101-1.log": 31 * day, "MSGTRK20250102-1.log": 29 * day, "MSGTRK20240101-1.log": 400 * day}
    for name, age in ages.items():
        (folder / name).write_text("#Software: Exchange Transport Simulator\r\n")
        os.utime(folder / name, (time.time() - age, time.time() - age))
    async with running_hub(tmp_path) as hub:
        await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<old@t>"))
        await wait_for(lambda: messages(hub, "alice@contoso.com"))
        assert await hub.idle(), "the hub did not settle"
    left = sorted(p.name for p in folder.iterdir())
    today = time.strftime("MSGTRK%Y%m%d-1.log", time.gmtime())
    assert left == sorted(["MSGTRK20250102-1.log", today])
    os.utime(folder / "MSGTRK20250102-1.log", (time.time() - 2 * day, time.time() - 2 * day))
    async with running_hub(tmp_path, {"tracking": {"max_age_days": 1}}) as hub:
        await send(hub.addresses[0][1], "john@fabrikam.test", ["bob@contoso.com"], make_message(message_id="<o2@t>"))
        await wait_for(lambda: messages(hub, "bob@contoso.com"))
    assert sorted(p.name for p in folder.iterdir()) == [today]
