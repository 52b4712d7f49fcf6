"""`transport queue …` and `transport message …`: Exchange's queue cmdlets on the command line.

They open the queue database directly, so they work whether the hub is running or not; a running hub
notices the change within `queue.admin_poll_interval`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from transport.core.commands import arguments, command, print_table
from transport.core.config import TransportConfig, load_config
from transport.core.outbound_config import queue_kind
from transport.core.tracking import TrackingEvent, tracking_log

from . import admin
from .store import QueueStatus

QUEUE_COLUMNS = ["identity", "delivery_type", "status", "message_count", "next_retry_time", "last_error"]
REMOVED_BY_ADMINISTRATOR = "550 5.7.1 Message deleted by administrator"
MESSAGE_COLUMNS = ["identity", "from_address", "status", "size", "subject", "recipients", "retry_count", "last_error"]


def _db(config: TransportConfig) -> Path:
    return config.data_root / "queue" / "mail.que"


def _emit(args: argparse.Namespace, data: Any, text: str) -> int:
    print(json.dumps(data, indent=2) if args.json else text)
    return 0


def _queue_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "messages", "suspend", "resume", "retry"],
                   help="list (Get-Queue), messages (Get-Message), suspend/resume/retry (…-Queue)")
    p.add_argument("queue", nargs="?", help="queue identity: Submission, Unreachable, Poison, mailbox, or SERVER\\NAME")
    p.add_argument("--resubmit", action="store_true", help="with retry: send the messages back through the categorizer")
    p.add_argument("--json", action="store_true", help="print JSON")


@command("queue", "see and manage queues (Get-Queue, Get-Message, Suspend-/Resume-/Retry-Queue)")
@arguments(_queue_args)
def cmd_queue(args: argparse.Namespace) -> int:
    def act(config: TransportConfig) -> int:
        if args.action == "list":
            rows = list_queues(config)
            if args.json:
                return _emit(args, rows, "")
            print_table(rows, QUEUE_COLUMNS)
            return 0
        if args.action == "messages":
            rows = list_messages(config, args.queue)
            if args.json:
                return _emit(args, rows, "")
            if not rows:
                print("No messages.")
            else:
                print_table([{**r, "recipients": ";".join(r["recipients"])} for r in rows], MESSAGE_COLUMNS)
            return 0
        if not args.queue:
            raise admin.AdminError(f"`queue {args.action}` needs a queue identity")
        data, text = queue_action(config, args.action, args.queue, args.resubmit)
        return _emit(args, data, text)
    return act(load_config(args.config))


def _message_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["suspend", "resume", "remove", "export"],
                   help="Suspend-/Resume-/Remove-/Export-Message")
    p.add_argument("identity", help="message identity (the number, or SERVER\\QUEUE\\NUMBER, from `transport queue messages`)")
    p.add_argument("--with-ndr", action="store_true", help="with remove: fail the recipients with an NDR, which the hub sends (tracking FAIL, DSN)")
    p.add_argument("--path", help="with export: the .eml file to write (replay format, X-Sender/X-Receiver envelope)")
    p.add_argument("--json", action="store_true", help="print JSON")


@command("message", "act on one queued message (Suspend-/Resume-/Remove-/Export-Message)")
@arguments(_message_args)
def cmd_message(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.action == "export":
        if not args.path:
            raise admin.AdminError("export needs --path FILE.eml")
        Path(args.path).write_bytes(export_message(config, args.identity))
        return _emit(args, {"identity": args.identity, "path": args.path}, f"exported to {args.path}")
    if args.action == "remove":
        summary = remove_message(config, args.identity, args.with_ndr)
        return _emit(args, summary, f"message {args.identity} removed from {summary['queue']}"
                     + ("; the hub sends the NDR" if args.with_ndr else ""))
    return _emit(args, *set_message_status(config, args.identity, suspended=args.action == "suspend"))


# What `transport queue …` and `transport message …` do, for every front end (the command line, the dashboard):
# each returns the object `--json` prints.

def list_queues(config: TransportConfig) -> list[dict[str, Any]]:
    """Get-Queue."""
    with admin.open_admin(_db(config)) as tables:
        return admin.list_queues(tables, config.receive.fqdn, lambda queue: queue_kind(config.send_connectors, queue))


def list_messages(config: TransportConfig, queue: str | None = None) -> list[dict[str, Any]]:
    """Get-Message, of every queue or of one."""
    with admin.open_admin(_db(config)) as tables:
        return admin.list_messages(tables, config.receive.fqdn, queue)


def queue_action(config: TransportConfig, action: str, queue: str, resubmit: bool = False) -> tuple[dict[str, Any], str]:
    """Suspend-, Resume- or Retry-Queue (`action` suspend, resume or retry): the JSON object and the line printed."""
    server = config.receive.fqdn
    with admin.open_admin(_db(config), write=True) as tables:
        if action == "retry":
            count = admin.retry_queue(tables, queue, resubmit)
            name = admin.queue_name(tables, queue)
            verb = "resubmitted" if resubmit else "set to retry now"
            return ({"queue": name, "messages": count, "resubmit": resubmit},
                    f"{server}\\{name}: {count} message(s) {verb}")
        if action not in ("suspend", "resume"):
            raise admin.AdminError(f"no queue action {action!r} (suspend, resume, retry)")
        name = admin.set_queue_status(tables, queue, suspended=action == "suspend")
    status = "Suspended" if action == "suspend" else "Ready"
    return {"queue": name, "status": status}, f"{server}\\{name}: {status}"


def set_message_status(config: TransportConfig, identity: str, suspended: bool) -> tuple[dict[str, Any], str]:
    """Suspend-/Resume-Message: the JSON object and the lines printed (one per queue item)."""
    with admin.open_admin(_db(config), write=True) as tables:
        results = admin.set_message_status(tables, identity, suspended=suspended)
    idents = [f"{config.receive.fqdn}\\{r['queue']}\\{r['identity']}" for r in results]
    summary = {"identity": idents[0] if len(idents) == 1 else str(results[0]["identity"]),
               "status": results[0]["status"], "queue": results[0]["queue"],
               "queues": [r["queue"] for r in results]}
    return summary, "\n".join(f"{i}: {r['status']}" for i, r in zip(idents, results))


def export_message(config: TransportConfig, identity: str) -> bytes:
    """Export-Message: the suspended message with its envelope as X-headers (the replay format)."""
    with admin.open_admin(_db(config)) as tables:
        item, recipients, statuses = admin.get_message(tables, identity)
    if any(s != QueueStatus.SUSPENDED for s in statuses):
        raise admin.AdminError(f"suspend message {identity} before exporting it (Export-Message "
                               f"needs a suspended message; it is {', '.join(statuses)})")
    from transport.core.replay_format import serialize

    item.recipients = [r for r in item.recipients if r.address in recipients]
    return serialize(item, config.receive.fqdn)


def remove_message(config: TransportConfig, identity: str, with_ndr: bool) -> dict[str, Any]:
    """Remove-Message [-WithNDR]. With an NDR the items are marked for the hub, which fails the recipients (FAIL),
    sends the NDR and removes them; without, they go now and the tracking log says DROP."""
    if with_ndr:
        with admin.open_admin(_db(config), write=True) as tables:
            queue = ", ".join(admin.remove_message_with_ndr(tables, identity, REMOVED_BY_ADMINISTRATOR))
        return {"identity": identity, "removed": True, "with_ndr": True, "queue": queue}
    with admin.open_admin(_db(config), write=True) as tables:
        item, recipients, queues, gone = admin.remove_message(tables, identity)
    if gone and item.spool is not None:
        item.spool.path.unlink(missing_ok=True)  # the commit is done: the body may go
    queue = ", ".join(queues)
    tracking = tracking_log(config)
    tracking.log(TrackingEvent.DROP, item, "ADMIN", recipients, source_context=queue, custom_data="Remove-Message")
    tracking.close()
    return {"identity": identity, "removed": True, "with_ndr": False, "queue": queue}
