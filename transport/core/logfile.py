"""Exchange's log files: daily CSV files with header lines, rolled over by size, kept for a number of days.

Message tracking (`MSGTRK`), the agent log (`AGENTLOG`) and the protocol logs (`RECV`, `SEND`) all write files
named `<prefix>yyyymmdd-N.log`, each starting with `#Software`, `#Version`, `#Log-Type`, `#Date` and `#Fields`.
A file that reaches the maximum file size is closed and the next row opens `-N+1`; when a file is opened, files
older than the maximum age are removed, and then the oldest files until the folder is under the maximum
directory size (MessageTrackingLogMaxFileSize, MessageTrackingLogMaxAge, MessageTrackingLogMaxDirectorySize).
Dates, days and ages are read from the hub's clock (`transport.core.clock`).

The rows a turn of the event loop writes are handed to the operating system together, in one write, at the end of
that turn (no fsync), or earlier, before a write of the queue store leaves for its commit (`flush_logs`): a row
is in its file before any commit that follows it, a kill -9 loses at most the rows of the turn it cuts short,
and no row is ever cut in half; a power cut may lose the last rows the disk had not yet written. Without a
running event loop (the command-line tools) each row is written at once.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Sequence

from .clock import Clock, real_time
from .headers import SERVER_VERSION

__all__ = ["RollingLog", "SOFTWARE", "flush_logs", "log_files", "read_rows"]

SOFTWARE = "Exchange Transport Simulator"
MB = 1024 * 1024

_unflushed: list["RollingLog"] = []
"""The logs holding rows this turn of the event loop wrote."""


def flush_logs() -> None:
    """Hand every log's buffered rows to the operating system (at the end of a turn of the event loop, and
    before the queue store commits anything a row records)."""
    logs = _unflushed[:]
    _unflushed.clear()
    for log_ in logs:
        log_.flush()


class RollingLog:
    """One open file at a time; `now()` gives the row's date-time text and rolls to a new day's file.

    In a receive worker process `sink` is set: rows go to it (with the log's prefix), for the main process,
    which owns the files, to append; the worker opens none.
    """

    sink: Callable[[str, Sequence[Any]], None] | None = None

    def __init__(self, folder: Path, prefix: str, log_type: str, fields: Sequence[str], *,
                 max_file_size: int = 10 * MB, max_age_days: float = 30, max_directory_size: int = 1000 * MB,
                 clock: Clock = real_time) -> None:
        self.folder = folder
        self.clock = clock
        self.prefix = prefix
        self.log_type = log_type
        self.fields = tuple(fields)
        self.max_file_size = max_file_size
        self.max_age_days = max_age_days
        self.max_directory_size = max_directory_size
        self._day = ""
        self._second = -1
        self._stamp = ""
        self._size = 0
        self._file: IO[str] | None = None
        self._rows = io.StringIO()  # the rows written since the last flush
        self._writer = csv.writer(self._rows, lineterminator="\r\n")

    def now(self) -> str:
        """The current time as Exchange writes it (`2026-12-02T10:15:42.123Z`); the text of the second is made
        once per second, the milliseconds per row."""
        now = self.clock()
        second = int(now)
        if second != self._second:
            stamp = time.gmtime(second)
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", stamp)
            day = time.strftime("%Y%m%d", stamp)
            if day != self._day:
                self._open(day)
        return f"{self._stamp}.{int((now - second) * 1000):03d}Z"

    def write(self, row: Sequence[Any]) -> None:
        """Append one row (call `now()` first for its date-time: that opens the day's file)."""
        if RollingLog.sink is not None:
            RollingLog.sink(self.prefix, row)
            return
        if self._file is None:
            self._open(self._day or time.strftime("%Y%m%d", time.gmtime(self.clock())))
        line = _plain_line(row)
        if line is None:
            self._size += self._writer.writerow(row)
        else:
            self._size += self._rows.write(line)
        if self._size >= self.max_file_size:
            self._open(self._day, roll=True)
        elif self not in _unflushed:
            _unflushed.append(self)
            if len(_unflushed) == 1:
                try:
                    asyncio.get_running_loop().call_soon(flush_logs)
                except RuntimeError:  # no event loop: write the row now
                    flush_logs()

    def flush(self) -> None:
        """Write the buffered rows to the file in one write."""
        rows = self._rows.getvalue()
        if rows and self._file is not None:
            self._rows.seek(0)
            self._rows.truncate()
            self._file.write(rows)
            self._file.flush()

    def _open(self, day: str, roll: bool = False) -> None:
        self.close()
        if RollingLog.sink is not None:
            self._day = day
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        numbers = [int(n) for n in (p.name[len(self.prefix) + 9:-4] for p in self.folder.glob(f"{self.prefix}{day}-*.log"))
                   if n.isdigit()]
        number = max(numbers, default=1)
        path = self.folder / f"{self.prefix}{day}-{number}.log"
        size = path.stat().st_size if path.exists() else 0
        if roll or size >= self.max_file_size:
            number, size = number + 1, 0
            path = self.folder / f"{self.prefix}{day}-{number}.log"
        self._file = open(path, "a", encoding="utf-8", errors="replace", newline="")  # 8-bit header bytes → U+FFFD
        if size == 0:
            size = self._file.write(
                f"#Software: {SOFTWARE}\r\n#Version: {SERVER_VERSION}\r\n#Log-Type: {self.log_type}\r\n"
                f"#Date: {datetime.fromtimestamp(self.clock(), timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}\r\n"
                f"#Fields: {','.join(self.fields)}\r\n")
        self._day, self._size = day, size
        self._expire(path)

    def _expire(self, current: Path) -> None:
        """Remove files past the maximum age, then the oldest while the folder is over its maximum size."""
        cutoff = self.clock() - self.max_age_days * 86400
        kept = []
        for old in log_files(self.folder, self.prefix):
            try:
                st = old.stat()
                if st.st_mtime < cutoff and old != current:
                    old.unlink()
                else:
                    kept.append((old, st.st_size))
            except OSError:
                pass
        total = sum(size for _, size in kept)
        for old, size in kept:
            if total <= self.max_directory_size or old == current:
                break
            try:
                old.unlink()
                total -= size
            except OSError:
                pass

    def close(self) -> None:
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None
            self._second = -1  # a later row opens the file again


def _plain_line(row: Sequence[Any]) -> str | None:
    """The row as the csv module would write it, when no field needs quoting (no comma, quote or line break:
    the usual row), made by a join; None for a row the csv module must write (also a row of one field, which it
    quotes when empty). The csv module goes character by character, three times slower on a tracking row; the
    hot rows (tracking, agent log) are all text, joined as they are, without a conversion per field."""
    try:
        line = ",".join(row)
    except TypeError:  # a number or None among the fields: each as the csv module spells it (a str enum: its value)
        line = ",".join(["" if f is None else f if isinstance(f, str) else str(f) for f in row])
    if line.count(",") != len(row) - 1 or '"' in line or "\n" in line or "\r" in line or len(row) == 1:
        return None
    return line + "\r\n"


def log_files(folder: Path, prefix: str, since_day: str = "", until_day: str = "") -> list[Path]:
    """The folder's files of that prefix, oldest first (by day, then by number), within the days given."""
    found = []
    for path in folder.glob(f"{prefix}*.log"):
        day, _, number = path.name[len(prefix):-4].partition("-")
        if (since_day and day < since_day) or (until_day and day > until_day):
            continue
        found.append((day, int(number) if number.isdigit() else 0, path))
    return [p for _, _, p in sorted(found)]


def read_rows(path: Path, fields: Sequence[str]) -> Iterator[dict[str, str]]:
    """Every row of one log file as field → value (the file's own #Fields line wins over `fields`)."""
    names = list(fields)

    def body(f: IO[str]) -> Iterator[str]:
        for line in f:
            if not line.startswith("#"):
                yield line
            elif line.startswith("#Fields:"):
                names[:] = line[len("#Fields:"):].strip().split(",")

    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for row in csv.reader(body(f)):
            if row:
                yield dict(zip(names, row))
