"""The dashboard's data: every page's objects, the same the command line's `--json` prints.

Queues come from `queues.cli` (the functions `transport queue …` and `transport message …` call), counters from
the snapshot `transport counters` reads, tracking rows from the tracking files, mailboxes from their Maildirs.
Nothing here holds a lock of the hub's: the queue database is read in its own short transactions, files as
they are.
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
from pathlib import Path
from typing import Any, Callable, Mapping

from queues import cli as queue_commands
from transport.core.config import TransportConfig
from transport.core.counters import load_snapshot
from transport.core.errors import TransportError
from transport.core.tracking import read_tracking_log

from .history import TrackingHistory

__all__ = ["Views", "TRACK_FILTERS", "MAILBOX_FOLDERS", "track_search"]

TRACK_FILTERS = ("sender", "recipient", "message_id", "internal_id", "event", "subject", "start", "end")
"""The filters of `/track` (and of Get-MessageTrackingLog: -Sender, -Recipients, -MessageId, -InternalMessageId,
-EventId, -MessageSubject, -Start, -End)."""

RESULT_SIZE = 1000
"""Get-MessageTrackingLog's default -ResultSize: the newest rows that match, at most this many."""

MAILBOX_FOLDERS = {"Inbox": "", "Junk": ".Junk", "Sent Items": ".Sent Items", "Outbox": ".Outbox",
                   "Quarantine": ".Quarantine"}
"""Folder names as Outlook shows them → the Maildir++ folder under the mailbox (Inbox is the Maildir itself)."""

STAMPED_PREFIXES = ("x-ms-exchange-organization-", "x-transport-", "received-spf", "authentication-results")


def _normal_id(value: str) -> str:
    return value.strip().strip("<>").lower()


def track_search(folder: Path, query: Mapping[str, str]) -> list[dict[str, str]]:
    """Message tracking search (Get-MessageTrackingLog): rows matching every filter given, oldest first, at most
    RESULT_SIZE (the newest). Addresses and subjects match as case-insensitive substrings, the message id and
    internal id exactly, start/end as ISO times (`2026-12-02T10:00`, inclusive)."""
    q = {k: str(v).strip() for k, v in query.items() if k in TRACK_FILTERS and str(v).strip()}
    start, end = q.get("start", "").replace(" ", "T"), q.get("end", "").replace(" ", "T")
    if q.get("internal_id") and not q["internal_id"].isdigit():
        raise TransportError(f"internal_id {q['internal_id']!r} is not a number (the InternalId of the 250 reply)")
    out = []
    for row in read_tracking_log(folder, start[:10].replace("-", "")):
        when = row.get("date-time", "")
        if (start and when < start) or (end and when[:len(end)] > end):
            continue
        if "message_id" in q and _normal_id(row.get("message-id", "")) != _normal_id(q["message_id"]):
            continue
        if "internal_id" in q and row.get("internal-message-id", "") != q["internal_id"]:
            continue
        if "event" in q and row.get("event-id", "").upper() != q["event"].upper():
            continue
        if any(k in q and q[k].lower() not in row.get(field, "").lower()
               for k, field in (("sender", "sender-address"), ("recipient", "recipient-address"),
                                ("subject", "message-subject"))):
            continue
        out.append(row)
    return out[-RESULT_SIZE:]


def _header_block(path: Path, limit: int = 256 * 1024) -> bytes:
    """The header block of a message file (up to the first empty line, at most `limit` bytes)."""
    with open(path, "rb") as f:
        head = f.read(limit)
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = head.find(sep)
        if at >= 0:
            return head[: at + len(sep)]
    return head


def _headers(path: Path) -> list[tuple[str, str]]:
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(_header_block(path))
    return [(k, " ".join(str(v).split())) for k, v in parsed.items()]


def message_summary(path: Path, folder: str) -> dict[str, Any]:
    """One message of a mailbox folder as the folder view lists it."""
    headers = {k.lower(): v for k, v in reversed(_headers(path))}  # the first of a repeated field wins
    date = headers.get("date", "")
    try:
        when = email.utils.parsedate_to_datetime(date).strftime("%Y-%m-%d %H:%M:%S") if date else ""
    except (TypeError, ValueError):
        when = date
    return {"folder": folder, "key": path.name, "date": when, "from": headers.get("from", ""),
            "subject": headers.get("subject", ""), "scl": headers.get("x-ms-exchange-organization-scl", ""),
            "sender_id": headers.get("x-ms-exchange-organization-senderidresult", ""),
            "size": path.stat().st_size, "read": path.parent.name == "cur"}


def list_folder(root: Path, address: str, folder: str) -> list[dict[str, Any]]:
    """The messages of one folder of a mailbox (Maildir new/ and cur/), newest first."""
    if folder not in MAILBOX_FOLDERS:
        raise TransportError(f"no folder {folder!r} (folders: {', '.join(MAILBOX_FOLDERS)})")
    base = _mailbox_dir(root, address) / MAILBOX_FOLDERS[folder]
    files = [p for sub in ("new", "cur") if (base / sub).is_dir() for p in (base / sub).iterdir() if p.is_file()]
    rows = []
    for path in files:
        try:
            rows.append(message_summary(path, folder))
        except OSError:
            continue  # moved or deleted while we looked
    return sorted(rows, key=lambda r: (r["date"], r["key"]), reverse=True)


def _mailbox_dir(root: Path, address: str) -> Path:
    base = root / address.lower()
    if "/" in address or address.startswith(".") or not base.is_dir():
        raise TransportError(f"no mailbox {address!r}")
    return base


def _message_file(root: Path, address: str, folder: str, key: str) -> Path:
    if folder not in MAILBOX_FOLDERS or "/" in key or key.startswith("."):
        raise TransportError(f"no message {key!r} in {folder!r}")
    base = _mailbox_dir(root, address) / MAILBOX_FOLDERS[folder]
    for sub in ("new", "cur"):
        if (base / sub / key).is_file():
            return base / sub / key
    raise TransportError(f"no message {key!r} in {address}'s {folder}")


class Views:
    """Builds every page's data from one configuration and the running hub's pipeline table (Get-TransportPipeline,
with its live call counts)."""

    def __init__(self, config: TransportConfig, pipeline: Callable[[], list[dict[str, Any]]]) -> None:
        self.config = config
        self.pipeline = pipeline
        self.tracking_folder = config.data_root / "logs" / "MessageTracking"
        self.mailbox_root = config.data_root / "mailboxes"
        self.history = TrackingHistory(self.tracking_folder)

    # -- queues ------------------------------------------------------------------------------------
    def queues(self) -> list[dict[str, Any]]:
        """`transport queue list --json`."""
        return queue_commands.list_queues(self.config)

    def queue_messages(self, queue: str) -> list[dict[str, Any]]:
        """`transport queue messages QUEUE --json`."""
        return queue_commands.list_messages(self.config, queue)

    # -- tracking ----------------------------------------------------------------------------------
    def track(self, query: Mapping[str, str]) -> list[dict[str, str]]:
        return track_search(self.tracking_folder, query)

    # -- mailboxes ---------------------------------------------------------------------------------
    def mailboxes(self) -> list[dict[str, Any]]:
        """Every mailbox of the directory with its message count per folder."""
        out = []
        for mailbox in self.config.mailboxes:
            counts = {}
            for name, sub in MAILBOX_FOLDERS.items():
                base = self.mailbox_root / mailbox.address.lower() / sub
                counts[name] = sum(1 for s in ("new", "cur") if (base / s).is_dir() for _ in (base / s).iterdir())
            out.append({"address": mailbox.address, "display_name": mailbox.display_name, "folders": counts})
        return out

    def mailbox(self, address: str, folder: str) -> list[dict[str, Any]]:
        return list_folder(self.mailbox_root, address, folder)

    def message(self, address: str, folder: str, key: str) -> dict[str, Any]:
        """A delivered message's headers, each marked when the hub (or its agents) stamped it."""
        path = _message_file(self.mailbox_root, address, folder, key)
        fqdn = self.config.receive.fqdn.lower()
        headers = [{"name": k, "value": v,
                    "stamped": k.lower().startswith(STAMPED_PREFIXES)
                    or (k.lower() == "received" and f"by {fqdn}" in v.lower())}
                   for k, v in _headers(path)]
        return message_summary(path, folder) | {"address": address, "headers": headers}

    # -- overview ----------------------------------------------------------------------------------
    def counters(self) -> dict[str, dict[str, int]]:
        """`transport counters --json`."""
        return load_snapshot(self.config.data_root / "logs" / "counters.json")["counters"]

    def overview(self) -> dict[str, Any]:
        self.history.refresh()
        try:
            queues = self.queues()
        except TransportError:
            queues = []  # no queue database yet
        return {"server": self.config.receive.fqdn, "per_minute": self.history.per_minute(),
                "queues": queues, "verdicts": self.history.verdict_rows(), "counters": self.counters(),
                "configuration": self.configuration()}

    def configuration(self) -> dict[str, Any]:
        """The hub's configuration summary: receive connectors, accepted domains, the agents in pipeline order."""
        return {
            "organization": self.config.organization.name,
            "accepted_domains": [{"domain": d.domain, "type": d.domain_type.value} for d in self.config.accepted_domains],
            "receive_connectors": [{"name": c.name, "bindings": c.bindings, "fqdn": c.fqdn,
                                    "permission_groups": [g.value for g in c.permission_groups],
                                    "agents": c.agents} for c in self.config.receive_connectors],
            "pipeline": self.pipeline(),
        }
