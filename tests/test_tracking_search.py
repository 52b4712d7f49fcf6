"""Message tracking: a message followed by message id and by internal id, filters combined, the day's files rolled
over by size and kept within their age and directory size, and `transport track` (table, --json, errors)."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta, timezone

from hubtools import make_message, run_cli, running_hub, send, tracking
from transport.core.mailitem import MailItem, Recipient, SessionInfo
from transport.core.tracking import TrackingEvent, TrackingLog, read_tracking_log
from transport.tracking_search import TrackingQuery, search


async def test_a_message_followed_by_message_id_and_internal_id(tmp_path):
    async with running_hub(tmp_path) as hub:
        await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com", "bob@contoso.com"],
                   make_message(subject="Quarterly figures", message_id="<q4@fabrikam.test>"))
        await send(hub.addresses[0][1], "eve@fabrikam.test", ["alice@contoso.com"],
                   make_message(subject="Other", message_id="<other@fabrikam.test>"))
        assert await hub.idle()
        folder = hub.tracking.folder
        by_id = search(folder, TrackingQuery(message_id="<Q4@fabrikam.test>"))
        assert [r["event-id"] for r in by_id] == ["RECEIVE", "SUBMIT", "DELIVER", "DELIVER"]
        assert {r["recipient-address"] for r in by_id if r["event-id"] == "DELIVER"} == {"alice@contoso.com", "bob@contoso.com"}
        internal = int(by_id[0]["internal-message-id"])
        assert search(folder, TrackingQuery(internal_id=internal)) == by_id
        assert search(folder, TrackingQuery(internal_id=internal + 1))[0]["message-id"] == "<other@fabrikam.test>"


async def test_filters_combine(tmp_path):
    async with running_hub(tmp_path) as hub:
        for n, (sender, rcpt) in enumerate([("a@fabrikam.test", "alice@contoso.com"), ("b@fabrikam.test", "alice@contoso.com"),
                                            ("a@fabrikam.test", "bob@contoso.com")]):
            await send(hub.addresses[0][1], sender, [rcpt], make_message(subject=f"Report {n}", message_id=f"<f{n}@x>"))
        assert await hub.idle()
        folder = hub.tracking.folder
        q = TrackingQuery(sender="A@fabrikam.test", recipient="alice@contoso.com", event=TrackingEvent.DELIVER)
        assert [r["message-id"] for r in search(folder, q)] == ["<f0@x>"]
        assert [r["message-id"] for r in search(folder, TrackingQuery(subject="report 2", event=TrackingEvent.RECEIVE))] == ["<f2@x>"]
        assert len(search(folder, TrackingQuery(event=TrackingEvent.RECEIVE, limit=2))) == 2
        later = datetime.now(timezone.utc) + timedelta(minutes=5)
        assert search(folder, TrackingQuery(sender="a@fabrikam.test", start=later)) == []
        assert len(search(folder, TrackingQuery(sender="a@fabrikam.test", end=later))) == 6  # RECEIVE, SUBMIT, DELIVER × 2
        assert search(folder, TrackingQuery(sender="fabrikam.test")) == []  # addresses match whole


def _item(n: int) -> MailItem:
    return MailItem(f"s{n}@fabrikam.test", [Recipient("alice@contoso.com")], make_message(message_id=f"<r{n}@x>"),
                    session=SessionInfo(client_ip="192.0.2.10"), internal_id=n)


def test_a_messages_rows_follow_its_edits_and_its_id(tmp_path):
    """A message's rows share the Message-ID, network id, size and subject they read once; an edit of its headers
    or a new internal id (the queue's) is seen by the next row, and another message has its own."""
    log = TrackingLog(tmp_path, "hub.contoso.com")
    item = _item(0)
    log.log(TrackingEvent.RECEIVE, item, "SMTP")
    item.set_header("Subject", "Edited by an agent")
    log.log(TrackingEvent.AGENTINFO, item, "AGENT")
    item.internal_id = 9
    log.log(TrackingEvent.SUBMIT, item, "QUEUE")
    log.log(TrackingEvent.RECEIVE, _item(1), "SMTP")
    log.close()
    rows = list(read_tracking_log(tmp_path))
    assert [r["message-subject"] for r in rows] == ["Hello", "Edited by an agent", "Edited by an agent", "Hello"]
    assert rows[0]["total-bytes"] != rows[1]["total-bytes"] == rows[2]["total-bytes"] == str(item.size)
    assert [r["internal-message-id"] for r in rows] == ["0", "0", "9", "1"]
    assert rows[0]["network-message-id"] == rows[1]["network-message-id"] != rows[2]["network-message-id"]
    assert rows[2]["network-message-id"].endswith("000000000009") and rows[3]["message-id"] == "<r1@x>"


def test_rollover_by_size_and_directory_size(tmp_path):
    log = TrackingLog(tmp_path, "hub.contoso.com", max_file_size=2000, max_directory_size=100_000)
    for n in range(40):
        log.log(TrackingEvent.RECEIVE, _item(n), "SMTP")
    log.close()
    day = time.strftime("%Y%m%d", time.gmtime())
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) > 3 and f"MSGTRK{day}-1.log" in names and f"MSGTRK{day}-2.log" in names
    assert all(p.stat().st_size < 2000 + 1000 for p in tmp_path.iterdir())
    assert all(p.read_text().startswith("#Software: ") for p in tmp_path.iterdir())
    assert [r["internal-message-id"] for r in read_tracking_log(tmp_path)] == [str(n) for n in range(40)]
    assert [r["message-id"] for r in search(tmp_path, TrackingQuery(internal_id=33))] == ["<r33@x>"]
    # over the directory size the oldest files go, the newest stay
    small = TrackingLog(tmp_path, "hub.contoso.com", max_file_size=2000, max_directory_size=5000)
    for n in range(40, 60):
        small.log(TrackingEvent.RECEIVE, _item(n), "SMTP")
    small.close()
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) < 5000 + 3000
    ids = [int(r["internal-message-id"]) for r in read_tracking_log(tmp_path)]
    assert ids[-1] == 59 and 0 not in ids


def test_old_files_expire(tmp_path):
    old = tmp_path / "MSGTRK20200101-1.log"
    old.write_text("#Fields: date-time\r\n")
    os.utime(old, (time.time() - 31 * 86400,) * 2)
    log = TrackingLog(tmp_path, "hub.contoso.com", max_age_days=30)
    log.log(TrackingEvent.RECEIVE, _item(1), "SMTP")
    log.close()
    assert not old.exists() and len(list(tmp_path.iterdir())) == 1


async def test_track_command(tmp_path):
    async with running_hub(tmp_path) as hub:
        await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"],
                   make_message(subject="Tracked", message_id="<t1@fabrikam.test>"))
        assert await hub.idle()
        assert [r["event-id"] for r in tracking(hub)][-1] == "DELIVER"
    path = tmp_path / "transport.yaml"
    done = run_cli("track", "-c", str(path), "--message-id", "<t1@fabrikam.test>", "--json")
    assert done.returncode == 0, done.stderr
    assert [r["event-id"] for r in json.loads(done.stdout)] == ["RECEIVE", "SUBMIT", "DELIVER"]
    table = run_cli("track", "-c", str(path), "--recipient", "alice@contoso.com", "--event", "deliver")
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["date-time", "event-id", "source"] and "Tracked" in lines[2] and len(lines) == 3
    none = run_cli("track", "-c", str(path), "--sender", "nobody@x")
    assert none.stdout.strip() == "No tracking rows match."
    bad = run_cli("track", "-c", str(path), "--event", "LOST")
    assert bad.returncode == 1 and "--event 'LOST' is not an event id (one of RECEIVE, AGENTINFO" in bad.stderr
    when = run_cli("track", "-c", str(path), "--start", "yesterday")
    assert when.returncode == 1 and "is not a date or time" in when.stderr


async def test_every_row_of_a_message_has_its_network_message_id(tmp_path):
    """network-message-id: one GUID-shaped id per message, the same in all its rows (RECEIVE to DELIVER), another
    for the next message."""
    import re

    async with running_hub(tmp_path) as hub:
        port = hub.addresses[0][1]
        for n in range(2):
            await send(port, "john@fabrikam.test", ["alice@contoso.com", "bob@contoso.com"],
                       make_message(message_id=f"<net{n}@fabrikam.test>"))
        assert await hub.idle()
        rows = tracking(hub)
    ids = {m: {r["network-message-id"] for r in rows if r["message-id"] == m} for m in ("<net0@fabrikam.test>",
                                                                                      "<net1@fabrikam.test>")}
    assert all(len(v) == 1 for v in ids.values()), ids
    first, second = (next(iter(v)) for v in ids.values())
    assert first != second and all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", i)
                                   for i in (first, second))
    assert len([r for r in rows if r["message-id"] == "<net0@fabrikam.test>"]) >= 4  # RECEIVE, SUBMIT, 2 × DELIVER


def test_a_search_for_letters_beyond_ascii_ignores_their_case(tmp_path):
    """`--subject über` finds "Über den Wolken", as `--subject ueber` would find "Ueber": case folds beyond ASCII."""
    log = TrackingLog(tmp_path, "hub.contoso.com")
    item = _item(1)
    item.set_header("Subject", "Über den Wolken")
    log.log(TrackingEvent.RECEIVE, item, "SMTP")
    log.close()
    for text in ("über", "ÜBER", "Über den"):
        assert [r["message-subject"] for r in search(tmp_path, TrackingQuery(subject=text))] == ["Über den Wolken"], text
