"""The dashboard's data: every page's objects, the same the command line's `--json` prints.

Queues come from `queues.cli` (the functions `transport queue …` and `transport message …` call), counters from
the snapshot `transport counters` reads, tracking rows from `transport.tracking_search` (`transport track`),
mailboxes from `transport.mailbox_listing` (`transport mailbox list`), traces from `transport.trace`.
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
from transport.mailbox_listing import HEADER_READ, MailboxFolder, list_folder
from transport.trace import trace_message
from transport.tracking_search import TrackingQuery, parse_event, parse_time, search

from .history import TrackingHistory

__all__ = ["Views", "TRACK_FILTERS", "tracking_query"]

TRACK_FILTERS = ("sender", "recipient", "message_id", "internal_id", "event", "subject", "start", "end")
"""The filters of `/track` (and of Get-MessageTrackingLog: -Sender, -Recipients, -MessageId, -InternalMessageId,
-EventId, -MessageSubject, -Start, -End)."""

STAMPED_PREFIXES = ("x-ms-exchange-organization-", "x-transport-", "received-spf", "authentication-results")
"""Header fields the hub and its agents write (a sender's own are stripped by the header firewall)."""


def tracking_query(params: Mapping[str, str]) -> TrackingQuery:
    """`/track`'s form fields as the query `transport track` makes of its options (empty fields are left out; a
    message id without its angle brackets gets them)."""
    q = {k: str(params.get(k, "")).strip() for k in TRACK_FILTERS}
    if q["internal_id"] and not q["internal_id"].isdigit():
        raise TransportError(f"internal id {q['internal_id']!r} is not a number (the InternalId of the 250 reply)")
    message_id = q["message_id"]
    if message_id and not message_id.startswith("<"):
        message_id = f"<{message_id}>"
    return TrackingQuery(q["sender"] or None, q["recipient"] or None, message_id or None,
                         int(q["internal_id"]) if q["internal_id"] else None, parse_event(q["event"] or None),
                         q["subject"] or None, parse_time(q["start"] or None, "start"), parse_time(q["end"] or None, "end"))


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
    """Builds every page's data from one configuration and the hub's pipeline table (Get-TransportPipeline)."""

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
    def track(self, params: Mapping[str, str]) -> list[dict[str, str]]:
        """`transport track … --json`: the rows matching the filters given, oldest first."""
        return search(self.tracking_folder, tracking_query(params))

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

    # -- trace -------------------------------------------------------------------------------------
    async def trace(self, raw: bytes, fields: Mapping[str, str]) -> dict[str, Any]:
        """`transport trace … --json` of a pasted or uploaded message with the form's session."""
        recipients = [r.strip() for r in fields.get("recipients", "").replace(";", ",").split(",") if r.strip()]
        trace = await trace_message(self.config, raw, client_ip=fields.get("client_ip") or "127.0.0.1",
                                    helo=fields.get("helo", ""), mail_from=fields.get("mail_from") or None,
                                    recipients=recipients, connector=fields.get("connector") or None)
        return trace.to_json()

    # -- overview ----------------------------------------------------------------------------------
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
