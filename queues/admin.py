"""Queue administration, modelled on Exchange's queue cmdlets (Get-Queue, Get-Message, Suspend-/Resume-/
Retry-Queue, Suspend-/Resume-/Remove-Message, Export-Message).

Every operation is a function of a SQLite connection, so it works the same whether the hub is running or
stopped: the command opens the queue database itself. A change bumps `control.admin_epoch` in the same
transaction; a running hub polls that value and re-reads its queues, so it never delivers a message an
administrator has just suspended or removed from a stale in-memory copy.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from transport.core.errors import AdminError
from transport.core.mailitem import MailItem, Spool

from .store import POISON, SUBMISSION, UNREACHABLE, QueueStatus, connect

__all__ = ["AdminError", "Identity", "parse_identity", "open_admin", "list_queues", "list_messages", "set_queue_status", "retry_queue",
           "set_message_status", "remove_message", "get_message", "queue_name", "DELIVERY_TYPES"]

# Queue key → Exchange's DeliveryType and NextHopDomain as Get-Queue shows them.
DELIVERY_TYPES = {
    SUBMISSION: ("Undefined", "Submission"),
    UNREACHABLE: ("Unreachable", "Unreachable Domain"),
    POISON: ("ShadowRedundancy", "Poison Message"),
    "mailbox": ("SmtpDeliveryToMailbox", "Mailbox Database"),
}


@contextmanager
def open_admin(db: Path, write: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection to the queue database; with write, one transaction that bumps the admin epoch."""
    if not db.exists():
        raise AdminError(f"no queue database at {db} (has the hub ever run with this data root?)")
    conn = connect(db)
    try:
        if write:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("INSERT INTO control(key, value) VALUES ('admin_epoch', 1)"
                         " ON CONFLICT(key) DO UPDATE SET value=value+1")
            conn.execute("COMMIT")
        else:
            yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


def admin_epoch(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM control WHERE key='admin_epoch'").fetchone()
    return row[0] if row else 0


def queue_name(conn: sqlite3.Connection, identity: str) -> str:
    """`Submission`, `hub.contoso.com\\mailbox`, `mailbox` … → the stored queue key (case-insensitive)."""
    wanted = identity.rpartition("\\")[2].strip().lower()
    known = {r[0] for r in conn.execute("SELECT DISTINCT queue FROM queue_items")}
    known |= {r[0] for r in conn.execute("SELECT name FROM queues")} | set(DELIVERY_TYPES)
    for name in known:
        if name.lower() == wanted:
            return name
    raise AdminError(f"no queue {identity!r} (queues: {', '.join(sorted(known))})")


class Identity(NamedTuple):
    """A message identity as the commands take it: the internal id, and optionally the queue it is in."""

    message: int
    queue: str | None = None


def parse_identity(text: str | int) -> Identity:
    """`3` (the InternalId of the 250 reply and the tracking log), `mailbox\\3` or `hub.contoso.com\\mailbox\\3`."""
    parts = str(text).strip().split("\\")
    if not parts[-1].isdigit() or len(parts) > 3:
        raise AdminError(f"{text!r} is not a message identity (use the InternalId, or SERVER\\QUEUE\\ID from"
                         " `transport queue messages`)")
    return Identity(int(parts[-1]), parts[-2] if len(parts) > 1 else None)


def list_queues(conn: sqlite3.Connection, server: str) -> list[dict[str, Any]]:
    """Get-Queue: one row per queue (Submission always; Unreachable and Poison only when they hold mail)."""
    suspended = {r[0] for r in conn.execute("SELECT name FROM queues WHERE status='Suspended'")}
    rows = conn.execute(
        "SELECT queue, COUNT(*), SUM(status='Active'), SUM(status='Retry'), MIN(CASE WHEN status='Retry'"
        " THEN next_attempt END), MAX(CASE WHEN last_error != '' THEN id END) FROM queue_items GROUP BY queue"
    ).fetchall()
    by_name = {r[0]: r for r in rows}
    names = [SUBMISSION] + sorted(n for n in by_name if n not in (SUBMISSION, UNREACHABLE, POISON))
    names += [n for n in (UNREACHABLE, POISON) if n in by_name]
    out = []
    for name in names:
        _, count, active, retry, next_retry, last_error_id = by_name.get(name, (name, 0, 0, 0, None, None))
        if name in suspended:
            status = "Suspended"
        elif active:
            status = "Active"
        elif retry and retry == count:
            status = "Retry"
        else:
            status = "Ready"
        last_error = ""
        if last_error_id is not None:
            last_error = conn.execute("SELECT last_error FROM queue_items WHERE id=?", (last_error_id,)).fetchone()[0]
        delivery_type, next_hop = DELIVERY_TYPES.get(name, ("SmtpRelayToRemoteAdSite", name))
        out.append({
            "identity": f"{server}\\{name}", "delivery_type": delivery_type, "next_hop_domain": next_hop,
            "status": status, "message_count": count or 0,
            "next_retry_time": _iso(next_retry) if next_retry else "", "last_error": last_error,
        })
    return out


def list_messages(conn: sqlite3.Connection, server: str, queue: str | None = None) -> list[dict[str, Any]]:
    """Get-Message: one row per queue item, optionally for one queue."""
    where, params = ("", ())
    if queue is not None:
        where, params = "WHERE q.queue=?", (queue_name(conn, queue),)
    rows = conn.execute(
        "SELECT q.id, q.queue, q.status, q.recipients, q.attempts, q.next_attempt, q.last_error, m.id, m.message_id,"
        f" m.sender, m.subject, m.size, m.received_at, m.source FROM queue_items q JOIN messages m ON m.id=q.message"
        f" {where} ORDER BY q.id", params).fetchall()
    return [{
        "identity": f"{server}\\{r[1]}\\{r[7]}", "queue": r[1], "status": r[2],
        "recipients": json.loads(r[3]), "retry_count": r[4],
        "next_retry_time": _iso(r[5]) if r[2] == "Retry" and r[5] else "", "last_error": r[6],
        "internal_message_id": r[7], "message_id": r[8], "from_address": r[9], "subject": r[10], "size": r[11],
        "date_received": _iso(r[12]), "source": r[13],
    } for r in rows]


def set_queue_status(conn: sqlite3.Connection, queue: str, suspended: bool) -> str:
    """Suspend-Queue / Resume-Queue; returns the queue key."""
    name = queue_name(conn, queue)
    conn.execute("INSERT INTO queues(name, status) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET status=excluded.status",
                 (name, "Suspended" if suspended else "Ready"))
    return name


def retry_queue(conn: sqlite3.Connection, queue: str, resubmit: bool = False) -> int:
    """Retry-Queue: waiting messages are tried now; with resubmit they go back through the categorizer."""
    name = queue_name(conn, queue)
    if name == POISON:
        raise AdminError("the Poison queue is never retried; resume a poison message to resubmit it")
    if not resubmit:
        if name == UNREACHABLE:
            raise AdminError("messages in Unreachable have no route: use --resubmit")
        return conn.execute("UPDATE queue_items SET next_attempt=0 WHERE queue=? AND status IN ('Retry','Ready')",
                            (name,)).rowcount
    return conn.execute("UPDATE queue_items SET queue=?, status='Ready', next_attempt=0 WHERE queue=?"
                        " AND status IN ('Retry','Ready')", (SUBMISSION, name)).rowcount


def _db_path(conn: sqlite3.Connection) -> Path:
    return Path(conn.execute("PRAGMA database_list").fetchone()[2])


def _items(conn: sqlite3.Connection, identity: str | int) -> list[tuple[int, str, str]]:
    """(item id, queue, status) of the queue items a message identity names: all the message's, or the one in
    the queue it names."""
    wanted = parse_identity(identity)
    rows = conn.execute("SELECT id, queue, status FROM queue_items WHERE message=? ORDER BY id",
                        (wanted.message,)).fetchall()
    if not rows:
        raise AdminError(f"no message {wanted.message} in any queue")
    if wanted.queue is not None:
        queue = queue_name(conn, wanted.queue)
        held = [r for r in rows if r[1] == queue]
        if not held:
            raise AdminError(f"message {wanted.message} is not in the {queue} queue (it is in {', '.join(r[1] for r in rows)})")
        rows = held
    return rows


def set_message_status(conn: sqlite3.Connection, identity: str | int, suspended: bool) -> list[dict[str, Any]]:
    """Suspend-Message / Resume-Message of every queue item the identity names. Resuming a poison message sends
    it back to the Submission queue."""
    message = parse_identity(identity).message
    out = []
    for item_id, queue, status in _items(conn, identity):
        if suspended:
            if queue == POISON:
                raise AdminError("messages in the Poison queue are already suspended")
            conn.execute("UPDATE queue_items SET status=? WHERE id=?", (QueueStatus.SUSPENDED, item_id))
            out.append({"identity": message, "queue": queue, "status": QueueStatus.SUSPENDED.value})
            continue
        if status != QueueStatus.SUSPENDED:
            raise AdminError(f"message {message} is not suspended in {queue} (status {status})")
        if queue == POISON:
            conn.execute("UPDATE queue_items SET queue=?, status=?, crash_count=0, next_attempt=0, last_error=''"
                         " WHERE id=?", (SUBMISSION, QueueStatus.READY, item_id))
            queue = SUBMISSION
        else:
            conn.execute("UPDATE queue_items SET status=?, next_attempt=0 WHERE id=?", (QueueStatus.READY, item_id))
        out.append({"identity": message, "queue": queue, "status": QueueStatus.READY.value})
    return out


def get_message(conn: sqlite3.Connection, identity: str | int) -> tuple[MailItem, list[str], list[str]]:
    """The mail item an identity names, the recipients of its queue items, and their statuses (Export-Message)."""
    items = _items(conn, identity)
    marks = ",".join("?" * len(items))
    rows = conn.execute(f"SELECT recipients FROM queue_items WHERE id IN ({marks})", [i[0] for i in items]).fetchall()
    message = parse_identity(identity).message
    envelope, raw, body_file, size = conn.execute(
        "SELECT envelope, raw, body_file, size FROM messages WHERE id=?", (message,)).fetchone()
    item = MailItem.from_dict(json.loads(envelope), bytes(raw), message)
    if body_file is not None:
        item.spool = Spool(_db_path(conn).parent / "spool" / body_file, size - len(raw))
    return item, [r for (rcpts,) in rows for r in json.loads(rcpts)], [i[2] for i in items]


def remove_message(conn: sqlite3.Connection, identity: str | int) -> tuple[MailItem, list[str], list[str], bool]:
    """Remove-Message: the queue items the identity names go (and the message, once no queue holds it); returns
    the message, the recipients removed, the queues they were in, and whether the message itself is gone (then
    its spooled body, if any, may be deleted once the transaction is committed). Not from Submission."""
    items = _items(conn, identity)
    if any(queue == SUBMISSION for _, queue, _ in items):
        raise AdminError("messages in the Submission queue cannot be removed (Exchange refuses it too); suspend it")
    item, recipients, _ = get_message(conn, identity)
    conn.executemany("DELETE FROM queue_items WHERE id=?", [(i[0],) for i in items])
    gone = conn.execute("SELECT 1 FROM queue_items WHERE message=?", (item.internal_id,)).fetchone() is None
    if gone:
        conn.execute("DELETE FROM messages WHERE id=?", (item.internal_id,))
    return item, recipients, [queue for _, queue, _ in items], gone


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
