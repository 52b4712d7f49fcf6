"""The dashboard's data: every page's objects, the same the command line's `--json` prints.

Queues come from `queues.cli` (the functions `transport queue …` and `transport message …` call), counters from
the snapshot `transport counters` reads, tracking rows from the tracking files, mailboxes from their Maildirs.
Nothing here holds a lock of the hub's: the queue database is read in its own short transactions, files as
they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from queues import cli as queue_commands
from transport.core.config import TransportConfig
from transport.core.counters import load_snapshot
from transport.core.errors import TransportError
from transport.core.headers import decode_value, header_end, parse_headers
from transport.core.tracking import read_tracking_log
from transport.mailbox_listing import HEADER_READ, MailboxFolder, list_folder

from .history import TrackingHistory

__all__ = ["Views", "TRACK_FILTERS", "track_search"]

TRACK_FILTERS = ("sender", "recipient", "message_id", "internal_id", "event", "subject", "start", "end")
"""The filters of `/track` (and of Get-MessageTrackingLog: -Sender, -Recipients, -MessageId, -InternalMessageId,
-EventId, -MessageSubject, -Start, -End)."""

RESULT_SIZE = 1000
"""Get-MessageTrackingLog's default -ResultSize: the newest rows that match, at most this many."""

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


def _headers(path: Path) -> list[tuple[str, str]]:
    """Every header field of a message file, in order, each value unfolded and decoded."""
    with open(path, "rb") as f:
        head = f.read(HEADER_READ)
    return [(h.name, " ".join(decode_value(h.value).split())) for h in parse_headers(head[:header_end(head)])]


def _folder(name: str) -> MailboxFolder:
    try:
        return MailboxFolder(name)
    except ValueError:
        raise TransportError(f"no folder {name!r} (folders: {', '.join(f.value for f in MailboxFolder)})") from None


def _message_file(root: Path, address: str, folder: MailboxFolder, key: str) -> Path:
    base = root / address.strip().lower() / folder.maildir
    if "/" not in key and not key.startswith("."):
        for sub in ("new", "cur"):
            if (base / sub / key).is_file():
                return base / sub / key
    raise TransportError(f"no message {key!r} in {address}'s {folder.value}")


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
        """Every mailbox of the directory with the number of messages in each folder."""
        out = []
        for mailbox in self.config.mailboxes:
            counts = {}
            for folder in MailboxFolder:
                try:
                    counts[folder.value] = len(list_folder(self.mailbox_root, mailbox.address, folder))
                except TransportError:  # not created yet (the hub makes it at start)
                    counts[folder.value] = 0
            out.append({"address": mailbox.address, "display_name": mailbox.display_name, "folders": counts})
        return out

    def mailbox(self, address: str, folder: str) -> list[dict[str, Any]]:
        """`transport mailbox list ADDRESS --folder FOLDER --json`, newest first."""
        return [m.to_json() for m in reversed(list_folder(self.mailbox_root, address, _folder(folder)))]

    def message(self, address: str, folder: str, key: str) -> dict[str, Any]:
        """A delivered message's summary and headers, each header marked when the hub (or its agents) stamped it."""
        where = _folder(folder)
        path = _message_file(self.mailbox_root, address, where, key)
        summary = next((m for m in list_folder(self.mailbox_root, address, where) if m.file == key), None)
        if summary is None:
            raise TransportError(f"no message {key!r} in {address}'s {where.value}")
        fqdn = self.config.receive.fqdn.lower()
        headers = [{"name": k, "value": v,
                    "stamped": k.lower().startswith(STAMPED_PREFIXES)
                    or (k.lower() == "received" and f"by {fqdn}" in v.lower())}
                   for k, v in _headers(path)]
        return summary.to_json() | {"address": address, "folder": where.value, "headers": headers}

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
