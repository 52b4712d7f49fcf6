"""Performance counters, grouped in sets named as Exchange names them ("MSExchange Sender Id Agent").

The running hub writes a snapshot to `<data root>/logs/counters.json` every 2 s of its clock and at shutdown,
so `transport counters` (like Get-Counter) can read them from another process; the snapshot also holds each
agent's hook calls, errors and time (`time_us`), which `transport pipeline` shows.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

from .clock import Clock, real_time

__all__ = ["Counters", "load_snapshot"]


class Counters:
    """Monotonic counters per set; cheap enough to bump on the hot path (a dict add). A snapshot's `written`
    time is read from `clock` (the hub's)."""

    def __init__(self, clock: Clock = real_time) -> None:
        self.clock = clock
        self._sets: dict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._changes = 0
        self._saved = -1
        self._saved_agents: dict[str, dict[str, int]] | None = None

    def increment(self, counter_set: str, name: str, by: int = 1) -> None:
        self._sets[counter_set][name] += by
        self._changes += 1

    def get(self, counter_set: str, name: str) -> int:
        return self._sets.get(counter_set, {}).get(name, 0)

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {s: dict(sorted(c.items())) for s, c in sorted(self._sets.items())}

    def save(self, path: Path, started: float, agents: dict[str, dict[str, int]] | None = None) -> None:
        """Write the snapshot atomically (write aside, rename) when anything changed since the last save.
        `agents` is each agent's {"calls": n, "errors": n, "time_us": n}."""
        if self._changes == self._saved and agents == self._saved_agents:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"started": started, "written": self.clock(), "counters": self.snapshot(),
                                   "agents": agents or {}}, indent=1), encoding="utf-8")
        os.replace(tmp, path)
        self._saved, self._saved_agents = self._changes, agents


def load_snapshot(path: Path) -> dict:
    """The last snapshot a hub wrote; an empty one when it never ran."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"counters": {}}
