"""The work folder's disk before anything is measured: what creating a file costs now, and waiting until that
cost has settled.

Why: on ext4 mounted without a journal (the bench machine's disk), the kernel skips recently freed inodes one
by one when it creates a file, for minutes after many files were deleted: creating an empty file cost 9–22 µs
on a quiet disk and 70–900 µs in the three minutes after 20,000 were removed (measured by hand, 2026-12-04).
A hub creates a Maildir file per message and bare aiosmtpd creates none, so a run started just after `make
test` or another bench run charged the hub for their cleanup. The rounds themselves delete nothing until the
end of the run (`targets.remove_at_end`); this waits out what was deleted before it began.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .measure import log
from .targets import remove_at_end

__all__ = ["QUIET_US", "Settling", "create_cost", "settle"]

QUIET_US = 50.0
"""µs per file creation at or under which the disk counts as quiet: 2–5× what it costs on a quiet disk here."""

PROBE_FILES = 200
PROBE_INTERVAL = 10.0  # seconds between two probes while waiting


def create_cost(folder: Path, n: int = PROBE_FILES) -> float:
    """µs per creation of an empty file in a new folder under `folder` (kept until the end of the run, as
    deleting its files would itself free inodes)."""
    folder.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="create-probe-", dir=folder))
    remove_at_end(work)
    t0 = time.perf_counter()
    for i in range(n):
        os.close(os.open(work / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return (time.perf_counter() - t0) / n * 1e6


@dataclass
class Settling:
    """What `settle` saw: each probe's µs per file creation, and the seconds it waited."""

    probes: list[float] = field(default_factory=list)
    waited: float = 0.0

    @property
    def quiet(self) -> bool:
        return bool(self.probes) and self.probes[-1] <= QUIET_US

    def sentence(self) -> str:
        """For the report: how the disk stood when the rounds began."""
        if not self.probes:
            return "The disk was not probed for recently freed inodes (`--settle 0`)."
        last = f"creating an empty file under the work folder cost {self.probes[-1]:.0f} µs"
        if len(self.probes) == 1:
            return f"Before the first round {last} (quiet: at most {QUIET_US:.0f} µs), so nothing was waited for."
        seen = ", ".join(f"{p:.0f}" for p in self.probes)
        if self.quiet:
            return (f"The disk was still freeing inodes from files deleted before the run: the bench waited"
                    f" {self.waited:.0f} s until {last} (probes: {seen} µs).")
        return (f"After waiting {self.waited:.0f} s {last}, above the {QUIET_US:.0f} µs of a quiet disk (probes:"
                f" {seen} µs): targets that create files (every hub) paid for files deleted before the run, and"
                f" their rates here are low. Run again later, or with a longer `--settle`.")


async def settle(folder: Path, limit: float) -> Settling:
    """Probe file creation under `folder`; while it costs more than QUIET_US, wait and probe again, for at most
    `limit` seconds. `limit` 0: no probe at all."""
    result = Settling()
    if limit <= 0:
        return result
    start = time.monotonic()
    result.probes.append(create_cost(folder))
    if not result.quiet and limit >= PROBE_INTERVAL:
        log(f"creating a file costs {result.probes[0]:.0f} µs (quiet: ≤ {QUIET_US:.0f}): files deleted before"
            f" this run are still being freed; waiting up to {limit:.0f} s (--settle)")
    while not result.quiet and time.monotonic() - start + PROBE_INTERVAL <= limit:
        await asyncio.sleep(PROBE_INTERVAL)
        result.probes.append(create_cost(folder))
        log(f"  {time.monotonic() - start:.0f} s: {result.probes[-1]:.0f} µs per file creation")
    result.waited = time.monotonic() - start
    return result
