"""queues.store: group commit, the life of a message's rows, and the crash count that leads to Poison."""

from __future__ import annotations

import asyncio
import threading
import sqlite3

import pytest

from queues.store import POISON, SUBMISSION, QueueStatus, QueueStore
from transport.core.errors import StoreError
from transport.core.mailitem import AuthAs, MailItem, Recipient, SessionInfo, Source, Stamp, Verdict
from transport.core.tracking import TrackingEvent


def item(n: int = 0, recipients: tuple[str, ...] = ("alice@contoso.com",)) -> MailItem:
    raw = f"Message-ID: <m{n}@fabrikam.test>\r\nSubject: test {n}\r\n\r\nbody {n}\r\n".encode()
    return MailItem("john@fabrikam.test", [Recipient(r) for r in recipients], raw)


@pytest.fixture
async def store(tmp_path):
    s = QueueStore(tmp_path / "queue" / "mail.que", durable=True)
    s.open()
    yield s
    await s.close()


def counts(s: QueueStore) -> tuple[int, int]:
    return s.read("SELECT COUNT(*) FROM messages")[0][0], s.read("SELECT COUNT(*) FROM queue_items")[0][0]


async def test_enqueues_waiting_on_a_commit_share_the_next_one(store):
    """Group commit: while one commit is in flight, the writes that arrive meanwhile all go into the next."""
    n = 100
    busy, release = threading.Event(), threading.Event()

    def slow(conn):
        busy.set()
        release.wait(30)

    blocker = asyncio.ensure_future(store.run(slow))
    await asyncio.to_thread(busy.wait, 30)
    before = store.commits
    writes = asyncio.gather(*(store.enqueue(item(i)) for i in range(n)))
    while store.pending_writes < n + 1:  # every enqueue is waiting on the writer
        await asyncio.sleep(0)
    release.set()
    await blocker
    ids = await writes
    assert store.commits - before == 2, "the blocked commit, then one for all the waiting enqueues"
    assert len(set(ids)) == n and all(i > 0 for i in ids)
    assert counts(store) == (n, n)
    assert {s.queue for s in store.items()} == {SUBMISSION}


async def test_log_rows_written_before_a_write_are_in_their_file_before_its_commit(tmp_path, store):
    """A row that records something (a delivery) is in its file before the commit that forgets the message:
    rows wait for the end of the loop turn, but a store write hands them to the OS first."""
    import os

    from transport.core.logfile import RollingLog, log_files

    log_ = RollingLog(tmp_path / "logs", "TEST", "Test Log", ("date-time", "what"))

    def text() -> str:
        return "".join(p.read_text() for p in log_files(tmp_path / "logs", "TEST"))

    seen: list[tuple[str, int]] = []
    log_.write((log_.now(), "delivered"))
    assert "delivered" not in text()  # buffered until the turn ends or a store write leaves
    await store.run(lambda conn: seen.append((text(), os.sched_getscheduler(0))))
    assert "delivered" in seen[0][0]
    assert seen[0][1] == os.SCHED_BATCH  # the writer's wake-up does not preempt the event loop
    log_.close()


async def test_each_await_returns_after_its_commit(tmp_path, store):
    mid = await store.enqueue(item(1))
    # a separate connection sees the row as soon as enqueue returns: it is committed, not just buffered
    other = sqlite3.connect(str(store.path))
    try:
        assert other.execute("SELECT id FROM messages").fetchall() == [(mid,)]
    finally:
        other.close()


async def test_enqueue_route_complete_removes_the_rows(store):
    it = item(2, ("alice@contoso.com", "bob@contoso.com", "x@fabrikam.test"))
    mid = await store.enqueue(it)
    assert it.internal_id == mid
    [sub] = store.items()
    assert (sub.queue, sub.status) == (SUBMISSION, "Ready")
    assert sub.recipients == ["alice@contoso.com", "bob@contoso.com", "x@fabrikam.test"]
    await store.mark_in_process([mid])
    assert store.items()[0].status == "Active"
    ids = await store.route(it, {"mailbox": ["alice@contoso.com", "bob@contoso.com"], "Unreachable": ["x@fabrikam.test"]})
    assert set(ids) == {"mailbox", "Unreachable"}
    assert sorted((s.queue, tuple(s.recipients)) for s in store.items()) == [
        ("Unreachable", ("x@fabrikam.test",)), ("mailbox", ("alice@contoso.com", "bob@contoso.com"))]
    await store.complete([ids["mailbox"]])
    assert counts(store) == (1, 1)  # the message stays while one of its items does
    await store.complete([ids["Unreachable"]])
    assert counts(store) == (0, 0)


async def test_route_to_nothing_drops_the_message(store):
    it = item(3)
    await store.enqueue(it)
    assert await store.route(it, {}) == {}
    assert counts(store) == (0, 0)


async def test_route_saves_edits_made_during_categorization(store):
    it = item(4)
    await store.enqueue(it)
    it.append_headers([("X-Routed", "yes")])
    it.scl = 6
    await store.route(it, {"mailbox": ["alice@contoso.com"]})
    back = store.load_message(it.internal_id)
    assert back.header("X-Routed") == "yes" and back.scl == 6 and back.header("X-MS-Exchange-Organization-SCL") == "6"
    assert store.read("SELECT size FROM messages")[0][0] == len(it.raw)


async def test_message_round_trip(store):
    it = MailItem(
        sender="", recipients=[Recipient("alice@contoso.com", {"NOTIFY": "NEVER"})],
        raw=b"Subject: x\n\n\xff binary \x00 body\n", source=Source.SMTP, mail_params={"BODY": "8BITMIME"},
        session=SessionInfo(session_id="s1", client_ip="192.0.2.1", client_port=4000, helo="mx.test", tls=True,
                            auth_user="bob@contoso.com", auth_as=AuthAs.INTERNAL),
        stamps={"PRD": "fabrikam.test"}, verdicts=[Verdict("A", "on_end_of_data", "Stamp", "why")])
    mid = await store.enqueue(it)
    back = store.load_message(mid)
    assert back.raw == it.raw and back.internal_id == mid
    assert back.sender == "" and back.mail_params == {"BODY": "8BITMIME"}
    assert back.recipients[0].address == "alice@contoso.com" and back.recipients[0].params == {"NOTIFY": "NEVER"}
    assert back.session == it.session and back.stamps == it.stamps and back.verdicts == it.verdicts
    assert store.load_message(mid + 1000) is None


async def test_the_content_filters_rule_list_is_not_stored(store):
    """Stamp.SCL_RULES is for `transport trace`, which reads it in process: the stored envelope leaves it out."""
    it = item(1)
    it.stamps.update({Stamp.PRD: "fabrikam.test", Stamp.SCL_RULES: {"scl": 0, "score": -1.0, "pcl": 1, "rules": []}})
    back = store.load_message(await store.enqueue(it))
    assert back.stamps == {"PRD": "fabrikam.test"}
    assert Stamp.SCL_RULES in it.stamps  # the item in memory keeps it


async def test_stamps_of_any_json_shape_round_trip(store):
    """The envelope is written by orjson, and by the json module for what orjson refuses: a custom agent's stamp
    with enum or number keys, nesting, non-ASCII text, or an integer over 64 bits comes back as json would give it;
    a stamp JSON cannot hold fails the write as it always did."""
    it = item(2)
    it.stamps.update({Stamp.PRD: "fabrikam.test", "Nested": {"list": [1, 2.5, None, True], "text": "Grüße ✉"},
                      "Keys": {7: "seven", Stamp.PRD: "enum key"}, "Big": 2 ** 70})
    back = store.load_message(await store.enqueue(it))
    assert back.stamps == {"PRD": "fabrikam.test", "Nested": {"list": [1, 2.5, None, True], "text": "Grüße ✉"},
                           "Keys": {"7": "seven", "PRD": "enum key"}, "Big": 2 ** 70}
    bad = item(3)
    bad.stamps["Odd"] = object()
    with pytest.raises(TypeError):
        await store.enqueue(bad)


async def test_a_failing_operation_fails_alone(store):
    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO messages(envelope, raw, received_at) VALUES ('{}', x'00', 0)")
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    results = await asyncio.gather(store.run(bad), store.enqueue(item(5)), return_exceptions=True)
    assert isinstance(results[0], StoreError) and "no_such_table" in str(results[0])
    assert isinstance(results[1], int)
    assert counts(store) == (1, 1)  # the bad operation's first insert was rolled back with it


async def test_recover_counts_crashes_and_poisons_at_the_threshold(tmp_path):
    path = tmp_path / "mail.que"
    s = QueueStore(path)
    s.open()
    mid = await s.enqueue(item(6))
    other = await s.enqueue(item(7))  # never claimed: not in process, not counted
    await s.mark_in_process([mid])
    await s.close()  # the process "dies" with the message in process

    s = QueueStore(path)
    s.open()
    assert await s.recover(threshold=2) == []
    [crashed] = s.items("message=?", (mid,))
    assert (crashed.queue, crashed.status, crashed.crash_count) == (SUBMISSION, "Ready", 1)
    await s.mark_in_process([mid])
    await s.close()  # dies again

    s = QueueStore(path)
    s.open()
    assert await s.recover(threshold=2) == [mid]
    [poisoned] = s.items("message=?", (mid,))
    assert (poisoned.queue, poisoned.status, poisoned.crash_count) == (POISON, "Suspended", 2)
    assert poisoned.last_error.startswith("550 5.3.0")
    [untouched] = s.items("message=?", (other,))
    assert (untouched.queue, untouched.status, untouched.crash_count) == (SUBMISSION, "Ready", 0)
    assert await s.recover(threshold=2) == []  # Poison is never counted again
    await s.close()


async def test_crash_counts_towards_poison(store):
    mid = await store.enqueue(item(8))
    await store.mark_in_process([mid])
    assert await store.crash(mid, threshold=3) is False
    assert await store.crash(mid, threshold=3) is False
    assert store.items()[0].crash_count == 2 and store.items()[0].queue == SUBMISSION
    assert await store.crash(mid, threshold=3) is True
    assert store.items()[0].queue == POISON


async def test_writes_after_close_are_refused(tmp_path):
    s = QueueStore(tmp_path / "mail.que")
    s.open()
    await s.close()
    with pytest.raises(StoreError, match="not open"):
        await s.enqueue(item(9))


async def test_update_item_allows_only_known_columns(store):
    await store.enqueue(item(10))
    [stored] = store.items()
    await store.update_item(stored.id, status="Retry", attempts=2, recipients=["bob@contoso.com"], last_error="x")
    [stored] = store.items()
    assert (stored.status, stored.attempts, stored.recipients, stored.last_error) == ("Retry", 2, ["bob@contoso.com"], "x")
    with pytest.raises(ValueError):
        await store.update_item(stored.id, message=99)


async def test_route_rewrites_the_content_only_when_an_agent_edited_it(tmp_path):
    from queues.store import QueueStore
    from transport.core.mailitem import MailItem, Recipient

    store = QueueStore(tmp_path / "q.db")
    store.open()
    try:
        item = MailItem("a@b.test", [Recipient("x@contoso.com")], b"Subject: s\r\n\r\nbody\r\n")
        await store.enqueue(item)
        await store.route(item, {"mailbox": ["x@contoso.com"]})
        assert store.load_message(item.internal_id).raw == b"Subject: s\r\n\r\nbody\r\n"
        item.append_headers([("X-Edited", "yes")])
        await store.route(item, {"mailbox": ["x@contoso.com"]}, from_queue="mailbox")
        assert store.load_message(item.internal_id).header("X-Edited") == "yes"
    finally:
        await store.close()


@pytest.mark.parametrize("row", [
    ("2026-12-03T11:51:03.259Z", "127.0.0.1", 7, None, 1.5, "plain text; with (parens)", ""),
    ("a,b", "say \"hi\"", "two\r\nlines", "lf\nonly", "cr\ronly", 3, None),
    ("",), (None,), ("x",), (" spaced ", "trailing ", ""), (QueueStatus.ACTIVE, TrackingEvent.DELIVER, 2),
    ("all", "text", "", TrackingEvent.DELIVER, "42"), ("all text", "but a, comma"), ("all", "text \"quoted\""),
])
def test_log_rows_joined_without_the_csv_module_are_the_bytes_it_writes(tmp_path, row):
    """RollingLog joins a row that needs no quoting itself; any row must come out as csv.writer writes it and
    read back field by field."""
    import csv
    import io

    from transport.core.logfile import RollingLog, log_files, read_rows

    log_ = RollingLog(tmp_path / "logs", "TEST", "Test Log", [f"f{i}" for i in range(len(row))])
    log_.now()
    log_.write(row)
    log_.close()
    expected = io.StringIO()
    csv.writer(expected, lineterminator="\r\n").writerow(row)
    (path,) = log_files(tmp_path / "logs", "TEST")
    assert path.read_bytes().decode().split("\r\n", 5)[5] == expected.getvalue()
    assert [list(r.values()) for r in read_rows(path, [])] == [next(csv.reader([expected.getvalue()]))]
