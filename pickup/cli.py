"""`transport pickup drop FILE…`: put message files into the Pickup (or Replay) directory and report on them.

Each file is written under a name the watcher ignores (`.<name>.part`), flushed, and renamed into place, so
the hub never claims half a file; a name already waiting in the folder gets `-1`, `-2`, … With `--wait` the
command follows each file through the message tracking log, where the hub's rows carry the file's name as
their source-context: RECEIVE means queued (with the internal id), BADMAIL means moved to badmail (with the
reason), an agent's AGENTINFO deletion means deleted. So `--wait` needs message tracking on, and a running hub.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from transport.core.commands import arguments, command, print_table
from transport.core.config import load_config
from transport.core.errors import ConfigError
from transport.core.tracking import log_time, read_tracking_log

__all__ = ["Drop", "drop_arguments", "drop_file", "drop_files", "follow"]


class DropStatus(str, enum.Enum):
    """Where a dropped file stands (the `status` column and JSON field)."""

    DROPPED = "dropped"    # in the folder, not followed (no --wait)
    QUEUED = "queued"
    DELETED = "deleted"    # by an agent
    BAD = "bad"            # moved to badmail
    PENDING = "pending"    # --wait gave up
    ERROR = "error"        # could not be copied in


@dataclass(slots=True)
class Drop:
    """One file handed to a directory, and what became of it."""

    file: str
    name: str
    status: DropStatus = DropStatus.DROPPED
    internal_id: int | None = None
    reason: str = ""


def drop_file(source: Path, directory: Path) -> str:
    """Copy a file into the directory atomically under a free `*.eml` name; returns that name."""
    data = source.read_bytes()
    stem = source.name[:-4] if source.name.lower().endswith(".eml") else source.name
    directory.mkdir(parents=True, exist_ok=True)
    part = directory / f".{stem}.{os.getpid()}.part"
    with open(part, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        for n in range(1000):
            name = f"{stem}.eml" if n == 0 else f"{stem}-{n}.eml"
            try:
                os.link(part, directory / name)  # fails when the name is taken: never replaces a waiting file
                return name
            except FileExistsError:
                continue
        raise OSError(f"no free name for {stem}.eml in {directory}")
    finally:
        part.unlink()


def drop_files(files: list[Path], directory: Path) -> list[tuple[str, str, str]]:
    """Drop each file (`drop_file`): (the file as given, its name in the folder or "", why it could not be or "")."""
    out = []
    for path in files:
        try:
            out.append((str(path), drop_file(path, directory), ""))
        except OSError as e:
            out.append((str(path), "", e.strerror or str(e)))
    return out


def drop_arguments(p: argparse.ArgumentParser, wait_help: str) -> None:
    """FILE…, --wait, --timeout, --json and -c, as every command that drops files takes them."""
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="message files (.eml)")
    p.add_argument("--wait", action="store_true", help=wait_help)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds --wait waits at most (default 30)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("-c", "--config", default=argparse.SUPPRESS, help="configuration file (default: transport.yaml)")


def follow(drops: list[Drop], tracking: Path, since: str, timeout: float) -> None:
    """Update each drop from the tracking log until every one is settled or `timeout` seconds pass."""
    waiting = {d.name: d for d in drops if d.status is DropStatus.DROPPED}
    deadline = time.monotonic() + timeout
    while waiting:
        for row in read_tracking_log(tracking, since[:10].replace("-", "")):  # the files from that day on
            drop = waiting.get(row.get("source-context", ""))
            if drop is None or row.get("date-time", "") < since:
                continue
            event = row.get("event-id")
            if event == "RECEIVE":
                drop.status, drop.internal_id = DropStatus.QUEUED, int(row["internal-message-id"])
            elif event == "BADMAIL":
                drop.status, drop.reason = DropStatus.BAD, row.get("recipient-status", "")
            elif event == "AGENTINFO" and ": deleted" in row.get("custom-data", ""):
                drop.status, drop.reason = DropStatus.DELETED, row["custom-data"]
            else:
                continue
            del waiting[drop.name]
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for drop in waiting.values():
        drop.status, drop.reason = DropStatus.PENDING, f"not picked up within {timeout:g}s (is the hub running?)"


def _arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    drop = sub.add_parser("drop", help="copy message files in atomically; --wait reports what became of each",
                          description="Copy message files into the Pickup (or Replay) directory.")
    drop.add_argument("--replay", action="store_true",
                      help="drop into the Replay directory (files with an X-Sender/X-Receiver envelope)")
    drop_arguments(drop, "wait until each file is queued, deleted or in badmail")


@command("pickup", "drop message files into the Pickup or Replay directory (`transport pickup drop FILE…`)")
@arguments(_arguments)
def cmd_pickup(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    settings, label = (config.replay, "Replay") if args.replay else (config.pickup, "Pickup")
    directory = settings.directory(config.data_root)
    if directory is None:
        raise ConfigError(f"{args.config}: the {label} directory is off ({label.lower()}.path is empty)")
    since = log_time()
    drops = [Drop(file, name, DropStatus.ERROR if error else DropStatus.DROPPED, reason=error)
             for file, name, error in drop_files(args.files, directory)]
    if args.wait:
        follow(drops, config.data_root / "logs" / "MessageTracking", since, args.timeout)
    if args.json:
        print(json.dumps([asdict(d) for d in drops], indent=2))
    else:
        rows = [{"file": d.file, "status": d.status.value,
                 "detail": f"InternalId={d.internal_id}" if d.internal_id is not None
                 else d.reason or str(directory / d.name)} for d in drops]
        print_table(rows, ["file", "status", "detail"])
    return 1 if any(d.status in (DropStatus.BAD, DropStatus.PENDING, DropStatus.ERROR) for d in drops) else 0
