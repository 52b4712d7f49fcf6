"""What a mailbox folder holds, read from its Maildir: so a user sees where mail landed without a mail client.

`transport mailbox list` prints it and the dashboard shows it. Only each file's header block is read (up to
`HEADER_READ` bytes), so a folder of large messages lists as fast as one of small ones. The SCL and the Sender
ID result are the hub's own stamps (X-MS-Exchange-Organization-SCL / -SenderIdResult), which the header
firewall keeps senders from presetting.
"""

from __future__ import annotations

import enum
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from .core.errors import AdminError
from .core.headers import ORGANIZATION_HEADER_PREFIX, addresses, decode_value, header_end, parse_headers
from .delivery.mailbox import JUNK_FOLDER, OUTBOX_FOLDER, SENT_ITEMS_FOLDER

__all__ = ["MailboxFolder", "MessageSummary", "list_folder"]

HEADER_READ = 64 * 1024
"""Bytes read from each file for its header block (PickupDirectoryMaxHeaderSize's size)."""


class MailboxFolder(str, enum.Enum):
    """A mailbox folder by the name Outlook shows; `maildir` is its Maildir++ folder under the mailbox."""

    INBOX = "Inbox"
    JUNK = "Junk"
    SENT_ITEMS = "Sent Items"
    OUTBOX = "Outbox"

    @property
    def maildir(self) -> str:
        return {MailboxFolder.INBOX: "", MailboxFolder.JUNK: JUNK_FOLDER, MailboxFolder.SENT_ITEMS: SENT_ITEMS_FOLDER,
                MailboxFolder.OUTBOX: OUTBOX_FOLDER}[self]


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """One message in a folder, as a mail client's message list shows it."""

    file: str
    date: str  # ISO 8601 from the Date header; when it is missing or unreadable, when the copy was written
    sender: str  # the From field, decoded
    subject: str
    size: int
    scl: int | None
    sender_id: str  # the Sender ID result the hub stamped ("" when none)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["from"] = data.pop("sender")
        return data


def _iso_date(value: str) -> str:
    try:
        return parsedate_to_datetime(value).isoformat() if value else ""
    except (TypeError, ValueError):
        return ""


def _sender(value: str) -> str:
    """`Display Name <address>` of the first From address, or the field as written when it does not parse."""
    text = decode_value(value)
    parsed = [(n, a) for n, a in addresses([text]) if a]
    if not parsed:
        return text
    name, address = parsed[0]
    return f"{name} <{address}>" if name else address


def _summary(path: Path) -> MessageSummary:
    with open(path, "rb") as f:
        head = f.read(HEADER_READ)
        stat = os.fstat(f.fileno())
    fields: dict[str, str] = {}
    for h in parse_headers(head[:header_end(head)]):
        fields.setdefault(h.key, h.value)
    scl = fields.get((ORGANIZATION_HEADER_PREFIX + "SCL").lower(), "").strip()
    subject = decode_value(fields.get("subject", "")).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return MessageSummary(
        file=path.name, sender=_sender(fields.get("from", "")), subject=subject, size=stat.st_size,
        date=_iso_date(fields.get("date", ""))
        or datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat(timespec="seconds"), scl=int(scl) if scl.lstrip("-").isdigit() else None,
        sender_id=fields.get((ORGANIZATION_HEADER_PREFIX + "SenderIdResult").lower(), ""))


def list_folder(mailboxes_root: Path, address: str, folder: MailboxFolder) -> list[MessageSummary]:
    """The messages in a mailbox folder (`new/` and `cur/`), oldest file name first (Maildir names start with
    the time of arrival). AdminError when there is no such mailbox under the root."""
    base = mailboxes_root / address.strip().lower()
    if not base.is_dir():
        raise AdminError(f"there is no mailbox {address} under {mailboxes_root}")
    target = base / folder.maildir if folder.maildir else base
    out = []
    for sub in ("new", "cur"):
        try:
            names = os.listdir(target / sub)
        except FileNotFoundError:
            continue
        for name in names:
            if name.startswith("."):
                continue
            try:
                out.append(_summary(target / sub / name))
            except OSError:  # taken away (read, moved) while listing
                continue
    return sorted(out, key=lambda m: m.file)
