"""The durable queue store: SQLite in WAL mode behind one writer thread that group-commits.

Every write is an operation handed to the writer thread; the thread runs all operations waiting at that
moment in one transaction (each inside its own savepoint, so one bad operation fails alone) and commits once.
While one commit's fsync is in flight the next operations pile up, so under load one fsync serves many
receptions, and the event loop never blocks on SQLite. A caller's await returns only after the commit.
The operations one turn of the event loop asks for leave together at the end of that turn (one hand-over, one
wake-up of the thread), after the log rows written so far (`transport.core.logfile.flush_logs`): a row that
records something, such as a delivery, is in its file before the commit that forgets the message.

Schema (designed for the queue semantics: retry, expiry, Unreachable, Poison, suspend):
- ``messages``: one row per mail item — envelope and session as JSON, the raw bytes, a few columns for listing.
  A large message's body is not in the row but in ``body_file`` under ``spool/`` beside the database (see
  `transport.spool`); the file goes with the row, after the commit that deletes it.
- ``queue_items``: one row per (message, queue): the Submission queue, a delivery queue keyed by next hop,
  Unreachable or Poison, with status, recipients, attempts, crash count, next retry and last error.
  A message row goes away with its last queue item.
- ``queues``: queue-level state set by administrators (Suspended).
- ``control``: ``admin_epoch``, bumped by every administrative change, which the running hub polls to drop
  what it holds in memory and re-read the queues.
- ``file_claims``: the file each message from a directory source (Pickup, Replay) came from, written in the
  message's own commit and removed once the file is gone (see `transport.core.sources.FileClaim`).

All SQL of the hub's queues lives here, behind named methods (the queue cmdlets' statements beside it, in
`queues.tables`); statuses are `QueueStatus`.
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
import queue as thread_queue
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import orjson

from transport.core.clock import Clock, real_time
from transport.core.errors import StoreError
from transport.core.logfile import flush_logs
from transport.core.loop_threads import batch_thread
from transport.core.mailitem import MailItem, Spool
from transport.core.sources import FileClaim

__all__ = ["QueueStore", "QueueStatus", "StoredItem", "SUBMISSION", "UNREACHABLE", "POISON", "SYSTEM_QUEUES"]

SUBMISSION, UNREACHABLE, POISON = "Submission", "Unreachable", "Poison"
SYSTEM_QUEUES = (SUBMISSION, UNREACHABLE, POISON)
"""The queues that are not delivery queues (every other queue name is a next hop)."""


class QueueStatus(str, enum.Enum):
    """A queue item's status, and a queue's (Suspended or Ready), with Exchange's names."""

    READY = "Ready"
    ACTIVE = "Active"          # in process: the poison-message guard
    RETRY = "Retry"
    SUSPENDED = "Suspended"
    PENDING_REMOVE = "PendingRemove"  # Remove-Message -WithNDR: the running hub sends the NDR, then removes it


SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL DEFAULT '',
    sender TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    size INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL DEFAULT 'SMTP',
    envelope TEXT NOT NULL,
    raw BLOB NOT NULL,
    received_at REAL NOT NULL,
    body_file TEXT
);
CREATE TABLE IF NOT EXISTS queue_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    queue TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'Ready',
    recipients TEXT NOT NULL DEFAULT '[]',
    attempts INTEGER NOT NULL DEFAULT 0,
    crash_count INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    first_attempt REAL,
    last_error TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    delay_notified INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS queue_items_by_queue ON queue_items(queue, status, next_attempt);
CREATE INDEX IF NOT EXISTS queue_items_by_message ON queue_items(message);
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL DEFAULT 'Ready'
);
CREATE TABLE IF NOT EXISTS control (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS file_claims (
    directory TEXT NOT NULL,
    name BLOB NOT NULL,
    sha256 TEXT NOT NULL,
    message INTEGER NOT NULL,
    PRIMARY KEY (directory, name)
);
CREATE INDEX IF NOT EXISTS file_claims_by_message ON file_claims(message);
"""


class _OperationFailed(Exception):
    """One operation of a batch raised: the batch is replayed with each operation isolated."""


@dataclass(slots=True)
class StoredItem:
    """A queue item as read back from the database (recovery and administration)."""

    id: int
    message: int
    queue: str
    status: str
    recipients: list[str]
    attempts: int
    crash_count: int
    next_attempt: float
    last_error: str
    created: float


def connect(path: Path, durable: bool = True) -> sqlite3.Connection:
    """A connection with the store's pragmas; creates the schema on first use."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA journal_size_limit=4194304")  # the WAL is cut back to 4 MB after each checkpoint
    conn.executescript(SCHEMA)
    if "body_file" not in {r[1] for r in conn.execute("PRAGMA table_info(messages)")}:  # a database from 0.1
        conn.execute("ALTER TABLE messages ADD COLUMN body_file TEXT")
    return conn


def _row_item(row: Sequence[Any]) -> StoredItem:
    return StoredItem(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6], row[7], row[8], row[9])


ITEM_COLUMNS = "id, message, queue, status, recipients, attempts, crash_count, next_attempt, last_error, created"

Op = Callable[[sqlite3.Connection], Any]


def _dumps(value: Any) -> str:
    """Compact JSON text, made by orjson: a message's envelope is written twice on its way to a mailbox, and
    orjson makes it in a tenth of the json module's time. What orjson will not write (an integer over 64 bits
    in an agent's stamp) goes to the json module, which raises as before for anything JSON cannot hold."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


class QueueStore:
    """Durable queues. Writes go through `_write` (group commit); reads use a separate connection. Times (an
    item's creation, its next attempt) are read from `clock`, the hub's."""

    def __init__(self, path: Path, durable: bool = True, batch_size: int = 256, clock: Clock = real_time) -> None:
        self.path = Path(path)
        self.clock = clock
        self.durable = durable
        self.batch_size = batch_size
        self.commits = 0
        self.pending_writes = 0
        self._ops: thread_queue.SimpleQueue[list[tuple[Op, asyncio.Future]] | None] = thread_queue.SimpleQueue()
        self._turn: list[tuple[Op, asyncio.Future]] = []  # asked for in this turn of the event loop
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self.spool_folder = self.path.parent / "spool"
        self._doomed: list[str] = []  # body files of messages the open transaction deletes (writer thread only)

    # -- life cycle -----------------------------------------------------------------------------------
    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = connect(self.path, self.durable)
        self._reader = connect(self.path, self.durable)
        self._loop = asyncio.get_running_loop()
        self._sweep_spool()
        self._thread = threading.Thread(target=self._run, args=(writer,), name="queue-store-writer", daemon=True)
        self._thread.start()

    def _sweep_spool(self) -> None:
        """Body files no message holds (a crash before their commit, or an administrator's removal) go."""
        if not self.spool_folder.is_dir():
            return
        held = {r[0] for r in self.read("SELECT body_file FROM messages WHERE body_file IS NOT NULL")}
        for path in self.spool_folder.iterdir():
            if path.name not in held:
                path.unlink(missing_ok=True)

    async def close(self) -> None:
        if self._thread is None:
            return
        self._hand_over()
        self._ops.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- the writer thread ----------------------------------------------------------------------------
    def _run(self, conn: sqlite3.Connection) -> None:
        batch_thread()  # a hand-over that wakes this thread must not take the CPU from the event loop
        try:
            while True:
                first = self._ops.get()
                if first is None:
                    return
                batch = first
                while len(batch) < self.batch_size:
                    try:
                        nxt = self._ops.get_nowait()
                    except thread_queue.Empty:
                        break
                    if nxt is None:
                        self._ops.put(None)  # finish this batch, then stop
                        break
                    batch += nxt
                self._commit(conn, batch)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[tuple[Op, asyncio.Future]]) -> None:
        """One transaction for the batch. Operations run straight; only when one of them fails is the batch
        replayed with a savepoint around each, so the bad one fails alone (savepoints cost two statements per
        operation, which the usual, all-good batch need not pay)."""
        try:
            try:
                results = self._apply(conn, batch, isolate=False)
            except _OperationFailed:
                results = self._apply(conn, batch, isolate=True)
            self.commits += 1
            for name in self._doomed:  # only now is the deletion of their messages durable
                (self.spool_folder / name).unlink(missing_ok=True)
        except Exception as e:  # the whole commit failed: nobody's write is durable
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            err = StoreError(f"queue database commit failed: {e}")
            results = [(fut, False, err) for _, fut in batch]
        assert self._loop is not None
        self._loop.call_soon_threadsafe(_resolve, results)

    def _apply(self, conn: sqlite3.Connection, batch: list[tuple[Op, asyncio.Future]],
               isolate: bool) -> list[tuple[asyncio.Future, bool, Any]]:
        results: list[tuple[asyncio.Future, bool, Any]] = []
        self._doomed.clear()
        conn.execute("BEGIN IMMEDIATE")
        for op, fut in batch:
            if not isolate:
                try:
                    results.append((fut, True, op(conn)))
                except Exception as e:
                    conn.execute("ROLLBACK")
                    raise _OperationFailed from e
                continue
            conn.execute("SAVEPOINT op")
            try:
                value = op(conn)
            except Exception as e:
                conn.execute("ROLLBACK TO op")
                results.append((fut, False, StoreError(f"{type(e).__name__}: {e}")))
            else:
                results.append((fut, True, value))
            conn.execute("RELEASE op")
        conn.execute("COMMIT")
        return results

    async def _write(self, op: Op) -> Any:
        if self._thread is None:
            raise StoreError("the queue store is not open")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.pending_writes += 1
        if not self._turn:
            loop.call_soon(self._hand_over)
        self._turn.append((op, fut))
        try:
            return await fut
        finally:
            self.pending_writes -= 1

    def _hand_over(self) -> None:
        """This turn's operations go to the writer thread, after the log rows written so far."""
        if self._turn:
            flush_logs()
            self._ops.put(self._turn)
            self._turn = []

    # -- writes ---------------------------------------------------------------------------------------
    async def enqueue(self, item: MailItem, queue: str = SUBMISSION, claim: FileClaim | None = None) -> int:
        """Persist a new message in a queue (Submission by default); returns its internal id.

        The `claim` of the file the message came from is committed together with the message or not at all.
        """
        await self._enqueue(item, {queue: [r.address for r in item.pending()]}, claim)
        return item.internal_id

    async def enqueue_routed(self, item: MailItem, deliveries: dict[str, list[str]],
                             claim: FileClaim | None = None) -> dict[str, int]:
        """Persist a new message straight into its delivery queues (next hop → recipients), one item each, when
        it was routed before its first commit (see `Categorizer.route_ahead`); returns next hop → item id."""
        return await self._enqueue(item, deliveries, claim)

    async def _enqueue(self, item: MailItem, queues: dict[str, list[str]], claim: FileClaim | None) -> dict[str, int]:
        envelope = _dumps(item.envelope_dict())
        items = [(queue, _dumps(recipients)) for queue, recipients in queues.items()]
        body_file = None
        if item.spool is not None:
            if item.spool.path.parent != self.spool_folder:
                raise StoreError(f"a spooled body must be in {self.spool_folder}, not {item.spool.path}")
            body_file = item.spool.path.name
        row = (_text(item.message_id), _text(item.sender), _text(item.subject[:255]), item.size, item.source.value,
               envelope, item.raw, item.received_at, body_file)
        created = self.clock()

        def op(conn: sqlite3.Connection) -> tuple[int, dict[str, int]]:
            cur = conn.execute(
                "INSERT INTO messages(message_id, sender, subject, size, source, envelope, raw, received_at, body_file)"
                " VALUES (?,?,?,?,?,?,?,?,?)", row)
            mid = cur.lastrowid
            ids = {queue: conn.execute("INSERT INTO queue_items(message, queue, recipients, created) VALUES (?,?,?,?)",
                                       (mid, queue, recipients, created)).lastrowid for queue, recipients in items}
            if claim is not None:
                conn.execute("INSERT OR REPLACE INTO file_claims(directory, name, sha256, message) VALUES (?,?,?,?)",
                             (claim.directory, claim.name, claim.sha256, mid))
            return mid, ids

        item.internal_id, ids = await self._write(op)
        item.stored_raw = row[6]
        return ids

    async def mark_in_process(self, message_ids: Sequence[int], queue: str = SUBMISSION) -> None:
        """Mark messages durably "in process" before anything runs on them (the poison-message guard)."""
        rows = [(QueueStatus.ACTIVE, i, queue) for i in message_ids]
        await self._write(lambda conn: conn.executemany(
            "UPDATE queue_items SET status=? WHERE message=? AND queue=?", rows))

    async def route(self, item: MailItem, deliveries: dict[str, list[str]], from_queue: str = SUBMISSION) -> dict[str, int]:
        """Replace the message's item in `from_queue` by one item per next hop; returns queue → item id.

        An empty `deliveries` means nothing is left to deliver: the message is removed.
        """
        envelope = _dumps(item.envelope_dict())
        raw = item.raw if item.raw is not item.stored_raw else None  # rewrite the content only if an agent edited it
        now = self.clock()

        def op(conn: sqlite3.Connection) -> dict[str, int]:
            conn.execute("DELETE FROM queue_items WHERE message=? AND queue=?", (item.internal_id, from_queue))
            if not deliveries:
                self._drop_if_orphan(conn, item.internal_id)
                return {}
            if raw is None:
                conn.execute("UPDATE messages SET envelope=? WHERE id=?", (envelope, item.internal_id))
            else:
                conn.execute("UPDATE messages SET envelope=?, raw=?, size=? WHERE id=?",
                             (envelope, raw, item.size, item.internal_id))
            ids = {}
            for q, rcpts in deliveries.items():
                cur = conn.execute("INSERT INTO queue_items(message, queue, recipients, created) VALUES (?,?,?,?)",
                                   (item.internal_id, q, _dumps(rcpts), now))
                ids[q] = cur.lastrowid
            return ids

        ids = await self._write(op)
        item.stored_raw = item.raw
        return ids

    async def complete(self, item_ids: Iterable[int]) -> None:
        """Queue items done (delivered or failed for good); messages with no items left go too."""
        ids = list(item_ids)

        def op(conn: sqlite3.Connection) -> None:
            messages = {r[0] for i in ids for r in conn.execute("SELECT message FROM queue_items WHERE id=?", (i,))}
            conn.executemany("DELETE FROM queue_items WHERE id=?", [(i,) for i in ids])
            for m in messages:
                self._drop_if_orphan(conn, m)

        await self._write(op)

    async def update_item(self, item_id: int, **fields: Any) -> None:
        """Set status, attempts, next_attempt, last_error, crash_count, queue or recipients of one item."""
        allowed = {"status", "attempts", "next_attempt", "last_error", "crash_count", "queue", "recipients",
                   "first_attempt", "delay_notified"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"cannot update {sorted(set(fields) - allowed)}")
        if "recipients" in fields:
            fields["recipients"] = _dumps(fields["recipients"])
        sets = ", ".join(f"{k}=?" for k in fields)
        values = [*fields.values(), item_id]
        await self._write(lambda conn: conn.execute(f"UPDATE queue_items SET {sets} WHERE id=?", values))

    async def retry_later(self, item_id: int, recipients: list[str], error: str,
                          delay: Callable[[int], float]) -> None:
        """A delivery attempt failed transiently: count it and wait in Retry for `delay(attempts)` seconds."""
        now = self.clock()

        def op(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT attempts FROM queue_items WHERE id=?", (item_id,)).fetchone()
            if row is None:  # removed by an administrator meanwhile
                return
            attempts = row[0] + 1
            conn.execute("UPDATE queue_items SET status=?, attempts=?, recipients=?, next_attempt=?,"
                         " last_error=?, first_attempt=COALESCE(first_attempt, ?) WHERE id=?",
                         (QueueStatus.RETRY, attempts, _dumps(recipients), now + delay(attempts), error, now,
                          item_id))

        await self._write(op)

    async def defer_submission(self, message_id: int, retry_in: float, error: str) -> None:
        """A routing agent deferred the message: its Submission item waits in Retry for `retry_in` seconds."""
        due = self.clock() + retry_in
        await self._write(lambda conn: conn.execute(
            "UPDATE queue_items SET status=?, next_attempt=?, last_error=? WHERE message=? AND queue=?",
            (QueueStatus.RETRY, due, error, message_id, SUBMISSION)))

    async def resubmit_unreachable(self) -> None:
        """Unreachable items (not suspended) go back to the Submission queue: routes may have changed."""
        await self._write(lambda conn: conn.execute(
            "UPDATE queue_items SET queue=?, status=? WHERE queue=? AND status != ?",
            (SUBMISSION, QueueStatus.READY, UNREACHABLE, QueueStatus.SUSPENDED)))

    async def crash(self, message_id: int, threshold: int, retry_in: float = 1.0) -> bool:
        """Count a crash against the message's Submission item; at the threshold move it to Poison.

        Below the threshold the item waits in Retry for `retry_in` seconds. Returns True when the message is
        now in the Poison queue.
        """
        due = self.clock() + retry_in

        def op(conn: sqlite3.Connection) -> bool:
            conn.execute("UPDATE queue_items SET crash_count=crash_count+1, status=?, next_attempt=?"
                         " WHERE message=? AND queue=?", (QueueStatus.RETRY, due, message_id, SUBMISSION))
            return bool(_poison_at(conn, threshold, "message=?", (message_id,)))

        return await self._write(op)

    async def recover(self, threshold: int) -> list[int]:
        """At start-up: Submission items left "in process" count a crash; those at the threshold go to Poison.

        Returns the ids of the messages moved to Poison.
        """
        def op(conn: sqlite3.Connection) -> list[int]:
            conn.execute("UPDATE queue_items SET crash_count=crash_count+1, status=? WHERE queue=? AND status=?",
                         (QueueStatus.READY, SUBMISSION, QueueStatus.ACTIVE))
            return _poison_at(conn, threshold, "1", ())

        return await self._write(op)

    async def run(self, op: Op) -> Any:
        """Run a custom write operation in the next group commit (tests set up odd states with it)."""
        return await self._write(op)

    # -- file claims (transport.core.sources.FileClaims) ----------------------------------------------
    def claimed(self, directory: str) -> dict[str, str]:
        return {os.fsdecode(bytes(name)): sha for name, sha in
                self.read("SELECT name, sha256 FROM file_claims WHERE directory=?", (directory,))}

    async def forget_directory(self, directory: str) -> None:
        await self._write(lambda conn: conn.execute("DELETE FROM file_claims WHERE directory=?", (directory,)))

    async def forget_messages(self, message_ids: list[int]) -> None:
        rows = [(i,) for i in message_ids]
        await self._write(lambda conn: conn.executemany("DELETE FROM file_claims WHERE message=?", rows))

    # -- reads ----------------------------------------------------------------------------------------
    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        assert self._reader is not None, "store not open"
        with self._read_lock:
            return self._reader.execute(sql, params).fetchall()

    def items(self, where: str = "1", params: Sequence[Any] = (), limit: int = -1) -> list[StoredItem]:
        """Queue items matching `where`, oldest first (at most `limit`; -1 = all)."""
        return [_row_item(r) for r in self.read(
            f"SELECT {ITEM_COLUMNS} FROM queue_items WHERE {where} ORDER BY id LIMIT ?", (*params, limit))]

    def ready(self, queue: str, limit: int = -1) -> list[StoredItem]:
        """A queue's Ready items, oldest first."""
        return self.items("queue=? AND status=?", (queue, QueueStatus.READY), limit)

    def message_ids(self) -> set[int]:
        """The internal ids of every message the store holds."""
        return {r[0] for r in self.read("SELECT id FROM messages")}

    def oldest_arrival(self) -> float | None:
        """When the oldest message the store holds arrived (None when it holds none)."""
        return self.read("SELECT MIN(received_at) FROM messages")[0][0]

    def count_ready(self, queue: str) -> int:
        return self.read("SELECT COUNT(*) FROM queue_items WHERE queue=? AND status=?", (queue, QueueStatus.READY))[0][0]

    def due(self, now: float, include_ready_submissions: bool) -> list[StoredItem]:
        """Retry items whose time has come in Submission and the delivery queues (and, after an administrator
        changed the queues, Ready Submission items too)."""
        submission = (QueueStatus.RETRY, QueueStatus.READY if include_ready_submissions else QueueStatus.RETRY)
        return self.items("next_attempt <= ? AND ((queue=? AND status IN (?, ?)) OR (queue NOT IN (?, ?, ?)"
                          " AND status=?))", (now, SUBMISSION, *submission, *SYSTEM_QUEUES, QueueStatus.RETRY))

    def expired(self, received_before: float) -> list[StoredItem]:
        """Items (not in Poison, not in process) of messages received at or before the cutoff."""
        return self._items_received_before(received_before, "q.queue != ? AND q.status != ?",
                                           (POISON, QueueStatus.ACTIVE))

    def delayed(self, received_before: float) -> list[StoredItem]:
        """Retry items of messages received at or before the cutoff that have had no delay notification yet."""
        return self._items_received_before(received_before, "q.status=? AND q.delay_notified=0", (QueueStatus.RETRY,))

    def _items_received_before(self, cutoff: float, where: str, params: Sequence[Any]) -> list[StoredItem]:
        columns = ", ".join("q." + c for c in ITEM_COLUMNS.split(", "))
        return [_row_item(r) for r in self.read(
            f"SELECT {columns} FROM queue_items q JOIN messages m ON m.id=q.message"
            f" WHERE {where} AND m.received_at <= ?", (*params, cutoff))]

    def delivery_queues(self) -> set[str]:
        """The names of the delivery queues (next hops) that hold items."""
        return {r[0] for r in self.read("SELECT DISTINCT queue FROM queue_items WHERE queue NOT IN (?, ?, ?)",
                                        SYSTEM_QUEUES)}

    def suspended_queues(self) -> set[str]:
        return {r[0] for r in self.read("SELECT name FROM queues WHERE status=?", (QueueStatus.SUSPENDED,))}

    def admin_epoch(self) -> int:
        """The counter every `transport queue`/`message` change bumps."""
        rows = self.read("SELECT value FROM control WHERE key='admin_epoch'")
        return rows[0][0] if rows else 0

    def load_message(self, message_id: int) -> MailItem | None:
        rows = self.read("SELECT envelope, raw, body_file, size FROM messages WHERE id=?", (message_id,))
        if not rows:
            return None
        envelope, raw, body_file, size = rows[0]
        item = MailItem.from_dict(json.loads(envelope), bytes(raw), message_id)
        if body_file is not None:
            item.spool = Spool(self.spool_folder / body_file, size - len(raw))
        item.stored_raw = item.raw
        return item

    def _drop_if_orphan(self, conn: sqlite3.Connection, message_id: int) -> None:
        """Delete the message once no queue item holds it; its body file goes after the commit."""
        if conn.execute("SELECT 1 FROM queue_items WHERE message=? LIMIT 1", (message_id,)).fetchone() is None:
            row = conn.execute("DELETE FROM messages WHERE id=? RETURNING body_file", (message_id,)).fetchone()
            if row is not None and row[0] is not None:
                self._doomed.append(row[0])


def _poison_at(conn: sqlite3.Connection, threshold: int, where: str, params: Sequence[Any]) -> list[int]:
    """Move Submission items at or over the crash threshold to Poison; returns their message ids."""
    cond = f"queue=? AND crash_count>=? AND {where}"
    args = (SUBMISSION, threshold, *params)
    moved = [r[0] for r in conn.execute(f"SELECT message FROM queue_items WHERE {cond}", args)]
    conn.execute(f"UPDATE queue_items SET queue=?, status=?, last_error=? WHERE {cond}",
                 (POISON, QueueStatus.SUSPENDED, "550 5.3.0 message crashed the transport process", *args))
    return moved


def _text(value: str) -> str:
    """Header text as SQLite can store it: raw 8-bit bytes (kept as surrogates when parsed) become U+FFFD."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _resolve(results: list[tuple[asyncio.Future, bool, Any]]) -> None:
    for fut, ok, value in results:
        if fut.done():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)
