"""`transport track`: search the message tracking log like Get-MessageTrackingLog (a table, or `--json`)."""

from __future__ import annotations

import argparse
import json

from .core.commands import arguments, command, load, print_table
from .core.errors import TransportError
from .core.tracking import TrackingEvent
from .tracking_search import DEFAULT_LIMIT, TrackingQuery, parse_event, parse_time, search

__all__ = ["cmd_track"]

COLUMNS = ("date-time", "event-id", "source", "internal-message-id", "message-id", "sender-address",
           "recipient-address", "recipient-status", "message-subject")


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sender", help="the sender-address, whole (case-insensitive)")
    p.add_argument("--recipient", help="one of the recipient-address values, whole")
    p.add_argument("--message-id", help="the Message-ID, with its angle brackets")
    p.add_argument("--internal-id", type=int, help="the internal-message-id (the InternalId in the 250 reply)")
    p.add_argument("--event", help="the event-id: " + ", ".join(e.value for e in TrackingEvent))
    p.add_argument("--subject", help="text the message-subject holds")
    p.add_argument("--start", help="from this time on (ISO 8601; UTC unless it says otherwise)")
    p.add_argument("--end", help="up to this time")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help=f"at most this many rows (ResultSize; default {DEFAULT_LIMIT})")
    p.add_argument("--json", action="store_true", help="print a JSON list of rows (field → value)")


@command("track", "search the message tracking log (like Get-MessageTrackingLog)")
@arguments(_args)
def cmd_track(args: argparse.Namespace) -> int:
    config = load(args)
    if args.limit < 1:
        raise TransportError("--limit must be 1 or more")
    query = TrackingQuery(args.sender, args.recipient, args.message_id, args.internal_id, parse_event(args.event),
                          args.subject, parse_time(args.start, "--start"), parse_time(args.end, "--end"), args.limit)
    rows = search(config.data_root / "logs" / "MessageTracking", query)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("No tracking rows match.")
    else:
        print_table(rows, COLUMNS)
    return 0
