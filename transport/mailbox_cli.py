"""`transport mailbox send|list`: send as a mailbox user through its Outbox, and see what a folder holds.

`send` writes each file aside and renames it into the mailbox's `.Outbox/new/` (the store driver takes it from
there); with `--wait` it follows the message tracking log until every recipient of each message is delivered or
failed. `list` reads the folder's Maildir (see `transport.mailbox_listing`); neither needs the hub's internals.
"""

from __future__ import annotations

import argparse
import enum
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pickup.cli import drop_arguments, drop_files

from .core.commands import arguments, command, print_table
from .core.config import TransportConfig, load_config
from .core.errors import AdminError
from .core.mailitem import Source
from .core.tracking import log_time, read_tracking_log
from .mailbox_listing import MailboxFolder, list_folder
from .store_driver import outbox as outbox_folder

__all__ = ["Sent", "SendStatus", "follow_sent"]

LIST_COLUMNS = ["date", "from", "subject", "scl", "sender_id", "size", "file"]


class SendStatus(str, enum.Enum):
    """Where a message handed to the Outbox stands (the `status` column and JSON field)."""

    SUBMITTED = "submitted"  # in the Outbox, not followed (no --wait)
    QUEUED = "queued"        # committed to the queue; --wait gave up before every recipient was settled
    DELIVERED = "delivered"  # every recipient delivered (or sent on by a send connector)
    FAILED = "failed"        # at least one recipient failed (the others delivered)
    BAD = "bad"              # the store driver could not submit it (badmail)
    PENDING = "pending"      # --wait gave up before the store driver took it
    ERROR = "error"          # could not be written into the Outbox


@dataclass(slots=True)
class Sent:
    """One file handed to an Outbox, and what became of it."""

    file: str
    name: str
    status: SendStatus = SendStatus.SUBMITTED
    internal_id: int | None = None
    delivered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # recipient → the reason
    reason: str = ""


def _outbox(config: TransportConfig, address: str) -> Path:
    """The Outbox folder the store driver watches for the mailbox (AdminError when there is none)."""
    if config.mailbox(address) is None:
        raise AdminError(f"{address} is not a mailbox of this organisation (mailboxes: in {config.locate('mailboxes')})")
    folder = outbox_folder(config.data_root / "mailboxes" / address.lower(), config.store_driver)
    if folder is None:
        raise AdminError(f"store-driver submission is off ({config.locate('store_driver')}: store_driver.path is empty)")
    return folder


def follow_sent(sent: list[Sent], tracking: Path, outbox: Path, sender: str, since: str, timeout: float) -> None:
    """Update each message from the tracking log until each is settled or `timeout` seconds pass.

    The store driver's RECEIVE row names the Outbox file (source-context) and gives the internal id and the
    recipients; DELIVER, SEND (handed to a send connector's next hop or drop directory) and FAIL rows of that
    id settle each recipient, once the file has left the Outbox (so
    its copy is in Sent Items); BADMAIL means it could not be submitted.
    """
    waiting = {s.name: s for s in sent if s.status is SendStatus.SUBMITTED}
    recipients: dict[int, set[str]] = {}
    deadline = time.monotonic() + timeout
    while waiting:
        by_id: dict[int, Sent] = {}
        for row in read_tracking_log(tracking, since[:10].replace("-", "")):  # the files from that day on
            if row.get("date-time", "") < since:
                continue
            event, context = row.get("event-id"), row.get("source-context", "")
            if row.get("source") == Source.STOREDRIVER.value and context in waiting \
                    and row.get("sender-address", "").lower() == sender.lower():
                entry = waiting[context]
                if event == "RECEIVE":
                    entry.status, entry.internal_id = SendStatus.QUEUED, int(row["internal-message-id"])
                    entry.delivered, entry.failed = [], {}  # read again from the top on each pass
                    recipients[entry.internal_id] = {r for r in row.get("recipient-address", "").split(";") if r}
                    by_id[entry.internal_id] = entry
                elif event == "BADMAIL":
                    entry.status, entry.reason = SendStatus.BAD, row.get("recipient-status", "")
                    del waiting[context]
                    continue
            entry = by_id.get(int(row["internal-message-id"])) if row.get("internal-message-id", "").isdigit() else None
            if entry is None or event not in ("DELIVER", "SEND", "FAIL"):
                continue
            for address in filter(None, row.get("recipient-address", "").split(";")):
                if event in ("DELIVER", "SEND") and address not in entry.delivered:  # in a mailbox, or handed on
                    entry.delivered.append(address)
                elif event == "FAIL":
                    entry.failed.setdefault(address, row.get("recipient-status", ""))
        for entry in list(waiting.values()):
            in_outbox = (outbox / entry.name).exists() or (outbox / entry.name).with_suffix(".tmp").exists()
            if entry.internal_id is not None and recipients[entry.internal_id] <= {*entry.delivered, *entry.failed} \
                    and not in_outbox:
                entry.status = SendStatus.FAILED if entry.failed else SendStatus.DELIVERED
                del waiting[entry.name]
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for entry in waiting.values():
        if entry.status is SendStatus.QUEUED:
            entry.reason = f"queued, not every recipient settled within {timeout:g}s"
        else:
            entry.status, entry.reason = SendStatus.PENDING, f"not taken from the Outbox within {timeout:g}s (is the hub running?)"


def _detail(s: Sent) -> str:
    if s.failed:
        return "; ".join(f"{r}: {why}" for r, why in s.failed.items())
    if s.status is SendStatus.DELIVERED:
        return f"InternalId={s.internal_id} to " + ", ".join(s.delivered)
    if s.internal_id is not None and not s.reason:
        return f"InternalId={s.internal_id}"
    return s.reason


def _send(args: argparse.Namespace, config: TransportConfig) -> int:
    outbox = _outbox(config, args.sender)
    since = log_time()
    sent = [Sent(file, name, SendStatus.ERROR if error else SendStatus.SUBMITTED, reason=error)
            for file, name, error in drop_files(args.files, outbox)]
    if args.wait:
        follow_sent(sent, config.data_root / "logs" / "MessageTracking", outbox, args.sender, since, args.timeout)
    if args.json:
        print(json.dumps([asdict(s) | {"status": s.status.value} for s in sent], indent=2))
    else:
        print_table([{"file": s.file, "status": s.status.value, "detail": _detail(s)} for s in sent],
                    ["file", "status", "detail"])
    settled = (SendStatus.SUBMITTED, SendStatus.DELIVERED)
    return 0 if all(s.status in settled for s in sent) else 1


def _list(args: argparse.Namespace, config: TransportConfig) -> int:
    if config.mailbox(args.address) is None:
        raise AdminError(f"{args.address} is not a mailbox of this organisation")
    found = list_folder(config.data_root / "mailboxes", args.address, MailboxFolder(args.folder))
    if args.json:
        print(json.dumps([m.to_json() for m in found], indent=2))
    else:
        print_table([m.to_json() | {"scl": "" if m.scl is None else m.scl} for m in found], LIST_COLUMNS)
    return 0


def _arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    send = sub.add_parser("send", help="submit message files as a mailbox user (through its Outbox)",
                          description="Put message files into a mailbox's Outbox; the store driver sends them.")
    send.add_argument("--from", dest="sender", required=True, metavar="ADDRESS", help="the mailbox that sends")
    drop_arguments(send, "wait until every recipient is delivered or failed")
    lst = sub.add_parser("list", help="the messages in a mailbox folder: date, from, subject, SCL, Sender ID",
                         description="List a mailbox folder as a mail client's message list would.")
    lst.add_argument("address", metavar="ADDRESS", help="the mailbox")
    lst.add_argument("--folder", default=MailboxFolder.INBOX.value, choices=[f.value for f in MailboxFolder],
                     help="the folder (default Inbox)")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.add_argument("-c", "--config", default=argparse.SUPPRESS, help="configuration file (default: transport.yaml)")


@command("mailbox", "send as a mailbox user, list a mailbox folder (`transport mailbox send|list`)")
@arguments(_arguments)
def cmd_mailbox(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    return _send(args, config) if args.action == "send" else _list(args, config)
