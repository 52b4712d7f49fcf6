"""The message tracking log: daily CSV files with Exchange's header lines, field names and event ids.

Files are `MSGTRKyyyymmdd-1.log` under `<data root>/logs/MessageTracking/`, each starting with the
`#Software`, `#Version`, `#Log-Type`, `#Date` and `#Fields` lines Exchange writes.

What survives a crash: each row is handed to the operating system as it is written (one write per row, no
fsync), so a killed process (kill -9) loses none; a power cut may lose the last rows the disk had not yet
written. Rows are written right after what they record (RECEIVE after the queue's commit, DELIVER after the
Maildir file), so the gap in between is closed at start-up: the hub writes the RECEIVE and DELIVER rows the log
lacks for the messages the queue still holds (see `recorded`).
"""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from .headers import SERVER_VERSION
from .mailitem import MailItem, Stamp

__all__ = ["FIELDS", "TrackingLog", "log_time", "read_tracking_log", "recorded"]

FIELDS = (
    "date-time", "client-ip", "client-hostname", "server-ip", "server-hostname", "source-context", "connector-id",
    "source", "event-id", "internal-message-id", "message-id", "network-message-id", "recipient-address",
    "recipient-status", "total-bytes", "recipient-count", "related-recipient-address", "reference",
    "message-subject", "sender-address", "return-path", "message-info", "directionality", "tenant-id",
    "original-client-ip", "original-server-ip", "custom-data",
)

SOFTWARE = "Exchange Transport Simulator"


class TrackingLog:
    """Appends tracking rows; one open file per day, rolled at midnight UTC."""

    def __init__(self, folder: Path, server_hostname: str, enabled: bool = True, max_age_days: int = 30) -> None:
        self.folder = folder
        self.server_hostname = server_hostname
        self.enabled = enabled
        self.max_age_days = max_age_days
        self._day = ""
        self._second = -1
        self._stamp = ""
        self._file: IO[str] | None = None
        self._writer: Any = None

    def _open(self, day: str) -> None:
        self.close()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"MSGTRK{day}-1.log"
        new = not path.exists() or path.stat().st_size == 0
        self._file = open(path, "a", encoding="utf-8", errors="replace", newline="")  # 8-bit header bytes → U+FFFD
        if new:
            self._file.write(
                f"#Software: {SOFTWARE}\r\n#Version: {SERVER_VERSION}\r\n#Log-Type: Message Tracking Log\r\n"
                f"#Date: {datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}\r\n"
                f"#Fields: {','.join(FIELDS)}\r\n")
        self._writer = csv.writer(self._file, lineterminator="\r\n")
        self._day = day
        self._expire()

    def _expire(self) -> None:
        cutoff = time.time() - self.max_age_days * 86400
        for old in self.folder.glob("MSGTRK*.log"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
            except OSError:
                pass

    def log(self, event_id: str, item: MailItem, source: str, recipients: Iterable[str] | None = None,
            recipient_status: str = "", source_context: str = "", reference: str = "",
            related_recipient: str = "", custom_data: str = "", connector_id: str = "") -> None:
        """One row; `recipients` defaults to the message's envelope recipients."""
        if not self.enabled:
            return
        now = time.time()
        second = int(now)
        if second != self._second:  # the date-time text is made once per second, the milliseconds per row
            stamp = time.gmtime(second)
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", stamp)
            day = time.strftime("%Y%m%d", stamp)
            if day != self._day:
                self._open(day)
        rcpts = list(recipients) if recipients is not None else [r.address for r in item.recipients]
        s = item.session
        self._writer.writerow((
            f"{self._stamp}.{int((now - second) * 1000):03d}Z", s.client_ip, s.helo, s.server_ip,
            self.server_hostname, source_context, connector_id, source, event_id, item.internal_id,
            item.message_id, "", ";".join(rcpts), recipient_status, item.size, len(rcpts), related_recipient,
            reference, item.subject, item.sender, item.sender, "", "", "",
            item.stamps.get(Stamp.ORIGINAL_CLIENT_IP, ""), "", custom_data,
        ))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._day, self._second = "", -1  # a later row opens the file again


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
    for path in sorted(folder.glob("MSGTRK*.log")):
        if path.name[6:14] < since_day:
            continue
        fields: list[str] = list(FIELDS)
        lines = []
        with open(path, encoding="utf-8", newline="") as f:
            for line in f:
                if line.startswith("#Fields:"):
                    fields = line[len("#Fields:"):].strip().split(",")
                elif not line.startswith("#"):
                    lines.append(line)
        for row in csv.reader(io.StringIO("".join(lines))):
            if row:
                yield dict(zip(fields, row))
