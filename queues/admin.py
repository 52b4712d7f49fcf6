"""Queue administration, modelled on Exchange's queue cmdlets (Get-Queue, Get-Message, Suspend-/Resume-/
Retry-Queue, Suspend-/Resume-/Remove-Message, Export-Message).

Every operation works on the queue database's tables (`queues.tables.QueueTables`, where its SQL lives), so it
works the same whether the hub is running or stopped: the command opens the database itself. This module holds
Exchange's rules (what may be retried, removed, resumed) and the shapes the commands print. A change bumps
`control.admin_epoch` in the same transaction; a running hub polls that value and re-reads its queues, so it never delivers a message an
administrator has just suspended or removed from a stale in-memory copy.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from transport.core.errors import AdminError
from transport.core.mailitem import MailItem

from .store import POISON, SUBMISSION, SYSTEM_QUEUES, UNREACHABLE, QueueStatus, connect
from .tables import QueueTables

__all__ = ["AdminError", "Identity", "parse_identity", "open_admin", "list_queues", "list_messages", "set_queue_status", "retry_queue",
           "set_message_status", "remove_message", "remove_message_with_ndr", "get_message", "queue_name", "DELIVERY_TYPES"]

MAILBOX = "mailbox"
"""The delivery queue of every local mailbox (the hub registers it at start)."""

# Queue key → Exchange's DeliveryType and NextHopDomain as Get-Queue shows them.
DELIVERY_TYPES = {
    SUBMISSION: ("Undefined", "Submission"),
    UNREACHABLE: ("Unreachable", "Unreachable Domain"),
    POISON: ("ShadowRedundancy", "Poison Message"),
    MAILBOX: ("SmtpDeliveryToMailbox", "Mailbox Database"),
}


@contextmanager
def open_admin(db: Path, write: bool = False) -> Iterator[QueueTables]:
    """The queue database's tables; with write, one transaction that bumps the admin epoch."""
    if not db.exists():
        raise AdminError(f"no queue database at {db} (has the hub ever run with this data root?)")
    conn = connect(db)
    try:
        tables = QueueTables(conn)
        if write:
            with tables.transaction():
                yield tables
        else:
            yield tables
    finally:
        conn.close()


def queue_name(tables: QueueTables, identity: str) -> str:
    """`Submission`, `hub.contoso.com\\mailbox`, `mailbox` … → the stored queue key (case-insensitive)."""
    wanted = identity.rpartition("\\")[2].strip().lower()
    known = tables.queue_names() | set(DELIVERY_TYPES)
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


def list_queues(tables: QueueTables, server: str,
                kinds: Callable[[str], tuple[str, str] | None] = lambda queue: None) -> list[dict[str, Any]]:
    """Get-Queue: one row per queue (Submission and the mailbox delivery queue always, a suspended queue even
    when empty, so it can be resumed; Unreachable and Poison only when they hold mail). `kinds` gives the
    DeliveryType and NextHopDomain of the send connectors' queues."""
    suspended = tables.suspended_queues()
    by_name = tables.queue_summaries()
    names = [SUBMISSION] + sorted(n for n in set(by_name) | set(suspended) | {MAILBOX} if n not in SYSTEM_QUEUES)
    names += [n for n in (UNREACHABLE, POISON) if n in by_name]
    out = []
    for name in names:
        count, active, retry, next_retry, last_error = by_name.get(name, (0, 0, 0, None, ""))
        if name in suspended:
            status = QueueStatus.SUSPENDED
        elif active:
            status = QueueStatus.ACTIVE
        elif retry and retry == count:
            status = QueueStatus.RETRY
        else:
            status = QueueStatus.READY
        delivery_type, next_hop = DELIVERY_TYPES.get(name) or kinds(name) or ("SmtpRelayToRemoteAdSite", name)
        out.append({
            "identity": f"{server}\\{name}", "delivery_type": delivery_type, "next_hop_domain": next_hop,
            "status": status.value, "message_count": count,
            "next_retry_time": _iso(next_retry) if next_retry else "", "last_error": last_error,
        })
    return out


def list_messages(tables: QueueTables, server: str, queue: str | None = None) -> list[dict[str, Any]]:
    """Get-Message: one row per queue item, optionally for one queue."""
    rows = tables.message_rows(None if queue is None else queue_name(tables, queue))
    return [{
        "identity": f"{server}\\{r[1]}\\{r[7]}", "queue": r[1], "status": r[2],
        "recipients": r[3], "retry_count": r[4],
        "next_retry_time": _iso(r[5]) if r[2] == QueueStatus.RETRY and r[5] else "", "last_error": r[6],
        "internal_message_id": r[7], "message_id": r[8], "from_address": r[9], "subject": r[10], "size": r[11],
        "date_received": _iso(r[12]), "source": r[13],
    } for r in rows]


def set_queue_status(tables: QueueTables, queue: str, suspended: bool) -> str:
    """Suspend-Queue / Resume-Queue; returns the queue key."""
    name = queue_name(tables, queue)
    tables.set_queue_status(name, QueueStatus.SUSPENDED if suspended else QueueStatus.READY)
    return name


def retry_queue(tables: QueueTables, queue: str, resubmit: bool = False) -> int:
    """Retry-Queue: waiting messages are tried now; with resubmit they go back through the categorizer."""
    name = queue_name(tables, queue)
    if name == POISON:
        raise AdminError("the Poison queue is never retried; resume a poison message to resubmit it")
    if not resubmit and name == UNREACHABLE:
        raise AdminError("messages in Unreachable have no route: use --resubmit")
    return tables.retry_now(name, SUBMISSION if resubmit else None)


def _items(tables: QueueTables, identity: str | int) -> list[tuple[int, str, str]]:
    """(item id, queue, status) of the queue items a message identity names: all the message's, or the one in
    the queue it names."""
    wanted = parse_identity(identity)
    rows = tables.items_of(wanted.message)
    if not rows:
        raise AdminError(f"no message {wanted.message} in any queue")
    if wanted.queue is not None:
        queue = queue_name(tables, wanted.queue)
        held = [r for r in rows if r[1] == queue]
        if not held:
            raise AdminError(f"message {wanted.message} is not in the {queue} queue (it is in {', '.join(r[1] for r in rows)})")
        rows = held
    return rows


def set_message_status(tables: QueueTables, identity: str | int, suspended: bool) -> list[dict[str, Any]]:
    """Suspend-Message / Resume-Message of every queue item the identity names. Resuming a poison message sends
    it back to the Submission queue."""
    message = parse_identity(identity).message
    out = []
    for item_id, queue, status in _items(tables, identity):
        if suspended:
            if queue == POISON:
                raise AdminError("messages in the Poison queue are already suspended")
            tables.set_item_status(item_id, QueueStatus.SUSPENDED)
            out.append({"identity": message, "queue": queue, "status": QueueStatus.SUSPENDED.value})
            continue
        if status != QueueStatus.SUSPENDED:
            raise AdminError(f"message {message} is not suspended in {queue} (status {status})")
        if queue == POISON:
            tables.release_poison(item_id)
            queue = SUBMISSION
        else:
            tables.set_item_status(item_id, QueueStatus.READY, due_now=True)
        out.append({"identity": message, "queue": queue, "status": QueueStatus.READY.value})
    return out


def get_message(tables: QueueTables, identity: str | int) -> tuple[MailItem, list[str], list[str]]:
    """The mail item an identity names, the recipients of its queue items, and their statuses (Export-Message)."""
    items = _items(tables, identity)
    item, recipients = tables.load(parse_identity(identity).message, [i[0] for i in items])
    return item, recipients, [i[2] for i in items]


def remove_message_with_ndr(tables: QueueTables, identity: str | int, reason: str) -> list[str]:
    """Remove-Message -WithNDR: the queue items the identity names become PendingRemove with the reason; the hub
    (now, or at its next start) fails their recipients with an NDR and removes them. Returns their queues."""
    items = _items(tables, identity)
    if any(queue == SUBMISSION for _, queue, _ in items):
        raise AdminError("messages in the Submission queue cannot be removed (Exchange refuses it too); suspend it")
    tables.mark_pending_remove([i[0] for i in items], reason)
    return [queue for _, queue, _ in items]


def remove_message(tables: QueueTables, identity: str | int) -> tuple[MailItem, list[str], list[str], bool]:
    """Remove-Message: the queue items the identity names go (and the message, once no queue holds it); returns
    the message, the recipients removed, the queues they were in, and whether the message itself is gone (then
    its spooled body, if any, may be deleted once the transaction is committed). Not from Submission."""
    items = _items(tables, identity)
    if any(queue == SUBMISSION for _, queue, _ in items):
        raise AdminError("messages in the Submission queue cannot be removed (Exchange refuses it too); suspend it")
    item, recipients, _ = get_message(tables, identity)
    gone = tables.remove_items([i[0] for i in items], item.internal_id)
    return item, recipients, [queue for _, queue, _ in items], gone


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
