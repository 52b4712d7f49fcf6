"""What the overview's charts show: messages received, delivered and failed per minute, and the agents' verdicts,
read from the message tracking log.

The log is the hub's own record and outlives restarts, so the charts show the last half hour even for a
dashboard that has just started. Each refresh reads only the bytes written since the last one (the files are
append-only), so a long log costs the dashboard, and the hub it shares the machine with, nothing per refresh.
"""

from __future__ import annotations

import csv
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transport.core.logfile import log_files
from transport.core.tracking import FIELDS, PREFIX

__all__ = ["TrackingHistory", "CHARTED_EVENTS"]

CHARTED_EVENTS = ("RECEIVE", "DELIVER", "FAIL")
_VERDICT = re.compile(r"(?:^|; )([^:;()]+): (\w+)")
"""`Sender Id Agent: Stamp at on_end_of_headers (…); Content Filter Agent: Stamp …` → (agent, action) pairs."""


@dataclass
class _File:
    offset: int = 0
    fields: list[str] = field(default_factory=lambda: list(FIELDS))


class TrackingHistory:
    """Per-minute event counts and verdict counts, kept up to date from the tracking files."""

    def __init__(self, folder: Path, minutes: int = 30) -> None:
        self.folder = folder
        self.minutes = minutes
        self._files: dict[Path, _File] = {}
        self._per_minute: Counter[tuple[str, str]] = Counter()  # (yyyy-mm-ddThh:mm, event-id)
        self.verdicts: Counter[tuple[str, str]] = Counter()  # (agent, action)

    def refresh(self) -> None:
        """Read what was appended since the last call (a file that shrank, or is new, is read from its start)."""
        if not self.folder.is_dir():
            return
        for path in log_files(self.folder, PREFIX):
            state = self._files.setdefault(path, _File())
            try:
                size = path.stat().st_size
                if size < state.offset:
                    state.offset = 0
                if size == state.offset:
                    continue
                with open(path, "rb") as f:
                    f.seek(state.offset)
                    chunk = f.read(size - state.offset)
            except OSError:
                continue
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a row still being written waits for the next refresh
            state.offset += len(complete)
            self._add(complete.decode("utf-8", "replace").splitlines(), state)

    def _add(self, lines: list[str], state: _File) -> None:
        rows = []
        for line in lines:
            if line.startswith("#Fields:"):
                state.fields = line[len("#Fields:"):].strip().split(",")
            elif line and not line.startswith("#"):
                rows.append(line)
        for values in csv.reader(rows):
            row = dict(zip(state.fields, values))
            event = row.get("event-id", "")
            if event in CHARTED_EVENTS:
                self._per_minute[(row.get("date-time", "")[:16], event)] += 1
            elif event == "AGENTINFO":
                for agent, action in _VERDICT.findall(row.get("custom-data", "")):
                    self.verdicts[(agent.strip(), action)] += 1

    def per_minute(self, now: float | None = None) -> list[dict[str, Any]]:
        """One row per minute of the last `minutes`, oldest first: {minute, RECEIVE, DELIVER, FAIL} (tracking rows)."""
        end = int(now if now is not None else time.time()) // 60 * 60
        out = []
        for start in range(end - (self.minutes - 1) * 60, end + 60, 60):
            minute = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(start))
            out.append({"minute": minute} | {e: self._per_minute.get((minute, e), 0) for e in CHARTED_EVENTS})
        return out

    def verdict_rows(self) -> list[dict[str, Any]]:
        """{agent, action, count}, most frequent first."""
        return [{"agent": a, "action": v, "count": n} for (a, v), n in self.verdicts.most_common()]
