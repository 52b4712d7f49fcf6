"""The message tracking log: daily CSV files with Exchange's header lines, field names and event ids.

Files are `MSGTRKyyyymmdd-N.log` under `<data root>/logs/MessageTracking/` (see `transport.core.logfile`: a new
`-N` at MessageTrackingLogMaxFileSize, files removed past MessageTrackingLogMaxAge and over
MessageTrackingLogMaxDirectorySize).

What survives a crash: the rows of one turn of the event loop are handed to the operating system at its end, or
before the queue store's next write leaves for its commit, whichever comes first (`transport.core.logfile`; no
fsync). Rows are written right after what they record (RECEIVE after the queue's commit, DELIVER after the
Maildir file), so a kill -9 may leave a gap: the rows of the turn it cut short. For RECEIVE and DELIVER the gap
is closed at start-up: the hub writes the rows the log lacks for the messages the queue still holds (see
`recorded`), and a message leaves the queue only by a store write, after its rows. A power cut may lose the last
rows the disk had not yet written.

Listeners (the metrics endpoint) see every row's event as it is logged, even with the log switched off.
"""

from __future__ import annotations

import enum
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from .clock import Clock, real_time
from .logfile import MB, SOFTWARE, RollingLog, log_files, read_rows
from .mailitem import MailItem, Stamp

if TYPE_CHECKING:
    from .config import TransportConfig

__all__ = ["tracking_log", "FIELDS", "TrackingEvent", "TrackingLog", "log_time", "read_tracking_log", "recorded", "SOFTWARE"]

FIELDS = (
    "date-time", "client-ip", "client-hostname", "server-ip", "server-hostname", "source-context", "connector-id",
    "source", "event-id", "internal-message-id", "message-id", "network-message-id", "recipient-address",
    "recipient-status", "total-bytes", "recipient-count", "related-recipient-address", "reference",
    "message-subject", "sender-address", "return-path", "message-info", "directionality", "tenant-id",
    "original-client-ip", "original-server-ip", "custom-data",
)
PREFIX = "MSGTRK"


class TrackingEvent(enum.StrEnum):
    """The event-id column (Get-MessageTrackingLog -EventId)."""

    RECEIVE = "RECEIVE"
    AGENTINFO = "AGENTINFO"
    SUBMIT = "SUBMIT"
    RESOLVE = "RESOLVE"
    EXPAND = "EXPAND"
    DELIVER = "DELIVER"
    SEND = "SEND"
    DEFER = "DEFER"
    FAIL = "FAIL"
    DSN = "DSN"
    DROP = "DROP"
    BADMAIL = "BADMAIL"
    POISONMESSAGE = "POISONMESSAGE"
    REDIRECT = "REDIRECT"
    TRANSFER = "TRANSFER"


Listener = Callable[[TrackingEvent, list[str], float], None]
"""Sees each row's event, its recipients and the message's arrival time."""


class TrackingLog:
    """Appends tracking rows to the day's file."""

    def __init__(self, folder: Path, server_hostname: str, enabled: bool = True, max_age_days: int = 30,
                 max_file_size: int = 10 * MB, max_directory_size: int = 1000 * MB, clock: Clock = real_time) -> None:
        self.folder = folder
        self.server_hostname = server_hostname
        self.enabled = enabled
        self.listeners: list[Listener] = []
        self._server_tag = f"{zlib.crc32(server_hostname.lower().encode()) & 0xFFFF:04x}"
        self.file = RollingLog(folder, PREFIX, "Message Tracking Log", FIELDS, max_file_size=max_file_size,
                               max_age_days=max_age_days, max_directory_size=max_directory_size, clock=clock)

    def log(self, event_id: TrackingEvent, item: MailItem, source: str, recipients: Iterable[str] | None = None,
            recipient_status: str = "", source_context: str = "", reference: str = "",
            related_recipient: str = "", custom_data: str = "", connector_id: str = "") -> None:
        """One row; `recipients` defaults to the message's envelope recipients."""
        rcpts = list(recipients) if recipients is not None else [r.address for r in item.recipients]
        for listener in self.listeners:
            listener(event_id, rcpts, item.received_at)
        if not self.enabled:
            return
        s = item.session
        self.file.write((  # all text: the log file joins such a row without converting each field
            self.file.now(), s.client_ip, s.helo, s.server_ip,
            self.server_hostname, source_context, connector_id, source, event_id, str(item.internal_id),
            item.message_id, self.network_message_id(item), ";".join(rcpts), recipient_status, str(item.size),
            str(len(rcpts)), related_recipient, reference, item.subject, item.sender, item.sender, "", "", "",
            item.stamps.get(Stamp.ORIGINAL_CLIENT_IP, ""), "", custom_data,
        ))

    def append(self, row: Sequence[Any]) -> None:
        """A row a receive worker process logged (the files are this process's). Workers log only what happens
        at receive (AGENTINFO, FAIL), never a delivery, so listeners are given no arrival time (0)."""
        for listener in self.listeners:
            listener(TrackingEvent(row[8]), row[12].split(";") if row[12] else [], 0.0)
        if self.enabled:
            self.file.write(row)

    def network_message_id(self, item: MailItem) -> str:
        """Exchange's network-message-id: one GUID per message on this server, the same in every row, across
        resubmits and restarts (made from the server name, the arrival time and the internal id), and never empty."""
        us = int(item.received_at * 1_000_000)
        return (f"{us >> 32 & 0xFFFFFFFF:08x}-{us >> 16 & 0xFFFF:04x}-{us & 0xFFFF:04x}-{self._server_tag}-"
                f"{item.internal_id & 0xFFFFFFFFFFFF:012x}")

    def close(self) -> None:
        self.file.close()


def tracking_log(config: "TransportConfig", clock: Clock = real_time) -> TrackingLog:
    """The configuration's tracking log, `<data root>/logs/MessageTracking/`."""
    t = config.tracking
    return TrackingLog(config.data_root / "logs" / "MessageTracking", config.receive.fqdn, t.enabled, t.max_age_days,
                       t.max_file_size, t.max_directory_size, clock)


def log_time() -> str:
    """Now, as the log's date-time field spells it: rows at or after it compare greater or equal as text."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def recorded(folder: Path, event_ids: set[str], since: float) -> set[tuple[str, int, str]]:
    """(event-id, internal-message-id, recipient) of every row of those events in the files since that time."""
    day = time.strftime("%Y%m%d", time.gmtime(since))
    found = set()
    for row in read_tracking_log(folder, day):
        if row.get("event-id") in event_ids and row.get("internal-message-id", "").isdigit():
            for recipient in row.get("recipient-address", "").split(";"):
                found.add((row["event-id"], int(row["internal-message-id"]), recipient))
    return found


def read_tracking_log(folder: Path, since_day: str = "") -> Iterator[dict[str, str]]:
    """Every row of every tracking file in the folder (from the day `yyyymmdd` on), oldest first, as field → value."""
    for path in log_files(folder, PREFIX, since_day):
        yield from read_rows(path, FIELDS)
