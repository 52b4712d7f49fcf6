"""The queue database as the queue cmdlets see it (`queues.admin`): one connection of its own beside the running hub.

The hub's own queue work goes through `queues.store.QueueStore`'s writer thread; these are the statements the
administrator's commands need, named, on the same schema (see `queues.store`).
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from transport.core.mailitem import MailItem, Spool

from .store import SUBMISSION, QueueStatus

__all__ = ["QueueTables"]


class QueueTables:
    """The queue database through one connection of its own, for work done beside the running hub (Exchange's
    queue cmdlets in `queues.admin`): each statement they need, named. `transaction()` wraps changes in one
    transaction that bumps the admin epoch, which the running hub polls to re-read its queues."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.path = Path(conn.execute("PRAGMA database_list").fetchone()[2])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("INSERT INTO control(key, value) VALUES ('admin_epoch', 1)"
                              " ON CONFLICT(key) DO UPDATE SET value=value+1")
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def queue_names(self) -> set[str]:
        """Every queue that holds items or has a state of its own."""
        return ({r[0] for r in self.conn.execute("SELECT DISTINCT queue FROM queue_items")}
                | {r[0] for r in self.conn.execute("SELECT name FROM queues")})

    def suspended_queues(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT name FROM queues WHERE status=?", (QueueStatus.SUSPENDED,))}

    def queue_summaries(self) -> dict[str, tuple[int, int, int, float | None, str]]:
        """queue → (items, active, retrying, next retry, the newest last error)."""
        out = {}
        for queue, count, active, retry, next_retry, error_id in self.conn.execute(
                "SELECT queue, COUNT(*), SUM(status=?), SUM(status=?), MIN(CASE WHEN status=? THEN next_attempt END),"
                " MAX(CASE WHEN last_error != '' THEN id END) FROM queue_items GROUP BY queue",
                (QueueStatus.ACTIVE, QueueStatus.RETRY, QueueStatus.RETRY)):
            error = "" if error_id is None else self.conn.execute(
                "SELECT last_error FROM queue_items WHERE id=?", (error_id,)).fetchone()[0]
            out[queue] = (count, active, retry, next_retry, error)
        return out

    def message_rows(self, queue: str | None = None) -> list[tuple]:
        """(item id, queue, status, recipients, attempts, next attempt, last error, message id, Message-ID, sender,
        subject, size, received at, source) per queue item, oldest first."""
        where, params = ("WHERE q.queue=?", (queue,)) if queue is not None else ("", ())
        return [(*r[:3], json.loads(r[3]), *r[4:]) for r in self.conn.execute(
            "SELECT q.id, q.queue, q.status, q.recipients, q.attempts, q.next_attempt, q.last_error, m.id,"
            " m.message_id, m.sender, m.subject, m.size, m.received_at, m.source FROM queue_items q"
            f" JOIN messages m ON m.id=q.message {where} ORDER BY q.id", params)]

    def set_queue_status(self, queue: str, status: QueueStatus) -> None:
        self.conn.execute("INSERT INTO queues(name, status) VALUES (?, ?)"
                          " ON CONFLICT(name) DO UPDATE SET status=excluded.status", (queue, status))

    def retry_now(self, queue: str, to_queue: str | None = None) -> int:
        """Waiting items of a queue are due now (moved to `to_queue` first, Ready, when given); how many."""
        waiting = (QueueStatus.RETRY, QueueStatus.READY)
        if to_queue is None:
            return self.conn.execute("UPDATE queue_items SET next_attempt=0 WHERE queue=? AND status IN (?, ?)",
                                     (queue, *waiting)).rowcount
        return self.conn.execute("UPDATE queue_items SET queue=?, status=?, next_attempt=0 WHERE queue=?"
                                 " AND status IN (?, ?)", (to_queue, QueueStatus.READY, queue, *waiting)).rowcount

    def mark_pending_remove(self, item_ids: list[int], reason: str) -> None:
        self.conn.executemany("UPDATE queue_items SET status=?, last_error=? WHERE id=?",
                              [(QueueStatus.PENDING_REMOVE, reason, i) for i in item_ids])

    def items_of(self, message: int) -> list[tuple[int, str, str]]:
        """(item id, queue, status) of each queue item of a message."""
        return self.conn.execute("SELECT id, queue, status FROM queue_items WHERE message=? ORDER BY id",
                                 (message,)).fetchall()

    def set_item_status(self, item_id: int, status: QueueStatus, due_now: bool = False) -> None:
        self.conn.execute("UPDATE queue_items SET status=?" + (", next_attempt=0" if due_now else "") + " WHERE id=?",
                          (status, item_id))

    def release_poison(self, item_id: int) -> None:
        """A poison message resumed: back to the Submission queue, its crash count cleared."""
        self.conn.execute("UPDATE queue_items SET queue=?, status=?, crash_count=0, next_attempt=0, last_error=''"
                          " WHERE id=?", (SUBMISSION, QueueStatus.READY, item_id))

    def load(self, message: int, item_ids: list[int]) -> tuple[MailItem, list[str]]:
        """The message (with its spooled body, if any) and the recipients of the given queue items."""
        marks = ",".join("?" * len(item_ids))
        rows = self.conn.execute(f"SELECT recipients FROM queue_items WHERE id IN ({marks})", item_ids).fetchall()
        envelope, raw, body_file, size = self.conn.execute(
            "SELECT envelope, raw, body_file, size FROM messages WHERE id=?", (message,)).fetchone()
        item = MailItem.from_dict(json.loads(envelope), bytes(raw), message)
        if body_file is not None:
            item.spool = Spool(self.path.parent / "spool" / body_file, size - len(raw))
        return item, [r for (rcpts,) in rows for r in json.loads(rcpts)]

    def remove_items(self, item_ids: list[int], message: int) -> bool:
        """Delete queue items, and the message once no item holds it (True then: its body file may go after the
        commit)."""
        self.conn.executemany("DELETE FROM queue_items WHERE id=?", [(i,) for i in item_ids])
        if self.conn.execute("SELECT 1 FROM queue_items WHERE message=?", (message,)).fetchone() is not None:
            return False
        self.conn.execute("DELETE FROM messages WHERE id=?", (message,))
        return True
