"""How fast `transport track` searches a month of message tracking logs.

`python -m bench.tracking_search [--messages-per-day N] [--days D] [--keep DIR]` writes D days of MSGTRK files
(N messages a day, each RECEIVE, SUBMIT, AGENTINFO and one or two DELIVER rows, rolled over at 10 MB as the hub
rolls them) into a temporary folder, then times typical Get-MessageTrackingLog questions with
`transport.tracking_search.search` and prints a table.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from transport.core.logfile import SOFTWARE
from transport.core.tracking import FIELDS, TrackingEvent
from transport.tracking_search import TrackingQuery, search

MAX_FILE = 10 * 1024 * 1024
SENDERS = [f"user{n}@fabrikam{n % 40}.example" for n in range(2000)]
RECIPIENTS = [f"mailbox{n}@contoso.com" for n in range(500)]
SUBJECTS = ["Quarterly report", "Invoice {n}", "Meeting notes", "RE: project status", "Weekly newsletter {n}",
            "Your order {n} has shipped", "Holiday schedule"]


def _rows(day: datetime, per_day: int, first_id: int, rng: random.Random):
    for n in range(per_day):
        at = day + timedelta(seconds=86400 * n / per_day)
        internal = first_id + n
        sender, subject = rng.choice(SENDERS), rng.choice(SUBJECTS).format(n=internal)
        rcpts = rng.sample(RECIPIENTS, rng.choice((1, 1, 1, 2)))
        mid = f"<{internal:08x}.{rng.getrandbits(32):08x}@{sender.split('@')[1]}>"
        ip = f"192.0.2.{rng.randrange(1, 255)}"
        for offset, event, source, who, status, context, custom in (
                (0, TrackingEvent.RECEIVE, "SMTP", rcpts, "", "08DC1A2B3C4D5E6F", ""),
                (0.004, TrackingEvent.AGENTINFO, "AGENT", rcpts, "", "08DC1A2B3C4D5E6F",
                 "Content Filter Agent: Stamp at on_end_of_data (SCL 1 (score 1): html_only +1 (HTML body))"),
                (0.01, TrackingEvent.SUBMIT, "QUEUE", rcpts, "", "Submission", ""),
                *((0.03, TrackingEvent.DELIVER, "STOREDRIVER", [r], "250 2.0.0 Delivered", "Inbox", "") for r in rcpts)):
            stamp = (at + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            yield (stamp, ip, "mail.fabrikam.example", "127.0.0.1", "hub.contoso.com", context, "Default Frontend",
                   source, event.value, internal, mid, "", ";".join(who), status, 4096, len(who), "", "", subject,
                   sender, sender, "", "", "", "", "", custom)


def generate(folder: Path, days: int, per_day: int, seed: int = 7) -> tuple[int, int, dict]:
    """Write the files; returns (rows, bytes, a sample message to look for)."""
    rng = random.Random(seed)
    start = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)
    total_rows = total_bytes = 0
    sample: dict = {}
    for d in range(days):
        day = start + timedelta(days=d)
        number, f, writer, size = 0, None, None, MAX_FILE
        for row in _rows(day, per_day, 1 + d * per_day, rng):
            if size >= MAX_FILE:
                if f is not None:
                    f.close()
                number += 1
                f = open(folder / f"MSGTRK{day:%Y%m%d}-{number}.log", "w", encoding="utf-8", newline="")
                size = f.write(f"#Software: {SOFTWARE}\r\n#Version: 15.20.0.0\r\n#Log-Type: Message Tracking Log\r\n"
                               f"#Date: {day:%Y-%m-%dT%H:%M:%S.000Z}\r\n#Fields: {','.join(FIELDS)}\r\n")
                writer = csv.writer(f, lineterminator="\r\n")
            size += writer.writerow(row)
            total_rows += 1
            if d == days // 2 and row[8] == "SUBMIT" and not sample:
                sample = {"message_id": row[10], "internal_id": row[9], "sender": row[19], "day": day}
        total_bytes += sum(p.stat().st_size for p in folder.glob(f"MSGTRK{day:%Y%m%d}-*.log"))
        f.close()
    return total_rows, total_bytes, sample


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--messages-per-day", type=int, default=10_000)
    p.add_argument("--keep", type=Path, help="write the files here and keep them")
    args = p.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="msgtrk-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        rows, size, s = generate(folder, args.days, args.messages_per_day)
        print(f"{args.days} days × {args.messages_per_day:,} messages: {rows:,} rows, {size / 2**20:,.0f} MB in "
              f"{len(list(folder.iterdir()))} files (written in {time.perf_counter() - t0:.1f} s)\n")
        day_end = s["day"] + timedelta(days=1) - timedelta(milliseconds=1)
        queries = [
            ("--message-id", TrackingQuery(message_id=s["message_id"])),
            ("--internal-id", TrackingQuery(internal_id=int(s["internal_id"]))),
            ("--sender (limit 1000)", TrackingQuery(sender=s["sender"])),
            ("--recipient --event DELIVER (limit 1000)", TrackingQuery(recipient="mailbox7@contoso.com", event=TrackingEvent.DELIVER)),
            ("--subject 'Invoice 1234'", TrackingQuery(subject="Invoice 1234")),
            ("--event FAIL (no such row)", TrackingQuery(event=TrackingEvent.FAIL)),
            ("--start/--end one day --event FAIL", TrackingQuery(event=TrackingEvent.FAIL, start=s["day"], end=day_end)),
        ]
        print("| query | rows found | seconds |\n|---|---|---|")
        for name, q in queries:
            t0 = time.perf_counter()
            found = search(folder, q)
            print(f"| `{name}` | {len(found):,} | {time.perf_counter() - t0:.2f} |")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
