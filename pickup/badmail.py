"""Badmail: where a dropped file that cannot be submitted ends, with a readable reason beside it.

Exchange renames such a file `<name>.bad` (`<name><datetime>.bad` when that name is taken), writes one event
log entry and a BADMAIL tracking event. Here the file moves to the data root's `badmail/` folder and the
reason goes into `<name>.bad.txt` next to it. When the file names a valid sender, Exchange also returns an NDR
with the original attached; here the watcher sends it when the directory's `badmail_ndr` is on.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["free_name", "move_to_badmail"]


def free_name(path: Path) -> Path:
    """The path itself, or `<stem><datetime><suffix>` beside it when it is taken (Exchange's scheme)."""
    if not path.exists():
        return path
    return path.with_name(f"{path.stem}{datetime.now():%Y%m%d%H%M%S%f}{path.suffix}")


def move_to_badmail(folder: Path, claimed: Path, name: str, directory: Path, reason: str) -> Path:
    """Move a claimed file to `folder/<stem>.bad` with `<stem>.bad.txt` holding the reason; returns the new path."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = name[:-4] if name.lower().endswith(".eml") else name
    bad = free_name(folder / f"{stem}.bad")
    bad.with_name(bad.name + ".txt").write_text(
        f"File: {name}\nDirectory: {directory}\n"
        f"Time: {datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}\nReason: {reason}\n", encoding="utf-8",
        errors="replace")  # a file name that is not UTF-8 still gets its reason written
    shutil.move(claimed, bad)
    return bad
