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
        server = config.receive.fqdn
        if args.action == "list":
            with admin.open_admin(_db(config)) as tables:
                rows = admin.list_queues(tables, server, lambda queue: queue_kind(config.send_connectors, queue))
            if args.json:
                return _emit(args, rows, "")
            print_table(rows, QUEUE_COLUMNS)
            return 0
        if args.action == "messages":
            with admin.open_admin(_db(config)) as tables:
                rows = admin.list_messages(tables, server, args.queue)
            if args.json:
                return _emit(args, rows, "")
            if not rows:
                print("No messages.")
            else:
                print_table([{**r, "recipients": ";".join(r["recipients"])} for r in rows], MESSAGE_COLUMNS)
            return 0
        if not args.queue:
            raise admin.AdminError(f"`queue {args.action}` needs a queue identity")
        with admin.open_admin(_db(config), write=True) as tables:
            if args.action == "retry":
                count = admin.retry_queue(tables, args.queue, args.resubmit)
                name = admin.queue_name(tables, args.queue)
                verb = "resubmitted" if args.resubmit else "set to retry now"
                return _emit(args, {"queue": name, "messages": count, "resubmit": args.resubmit},
                             f"{server}\\{name}: {count} message(s) {verb}")
            name = admin.set_queue_status(tables, args.queue, suspended=args.action == "suspend")
        status = "Suspended" if args.action == "suspend" else "Ready"
        return _emit(args, {"queue": name, "status": status}, f"{server}\\{name}: {status}")
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
    def act(config: TransportConfig) -> int:
        db = _db(config)
        if args.action == "export":
            if not args.path:
                raise admin.AdminError("export needs --path FILE.eml")
            with admin.open_admin(db) as tables:
                item, recipients, statuses = admin.get_message(tables, args.identity)
            if any(s != QueueStatus.SUSPENDED for s in statuses):
                raise admin.AdminError(f"suspend message {args.identity} before exporting it (Export-Message "
                                       f"needs a suspended message; it is {', '.join(statuses)})")
            from transport.core.replay_format import serialize

            item.recipients = [r for r in item.recipients if r.address in recipients]
            Path(args.path).write_bytes(serialize(item, config.receive.fqdn))
            return _emit(args, {"identity": args.identity, "path": args.path}, f"exported to {args.path}")
        if args.action != "remove":
            with admin.open_admin(db, write=True) as tables:
                results = admin.set_message_status(tables, args.identity, suspended=args.action == "suspend")
            idents = [f"{config.receive.fqdn}\\{r['queue']}\\{r['identity']}" for r in results]
            summary = {"identity": idents[0] if len(idents) == 1 else str(results[0]["identity"]),
                       "status": results[0]["status"], "queue": results[0]["queue"],
                       "queues": [r["queue"] for r in results]}
            return _emit(args, summary, "\n".join(f"{i}: {r['status']}" for i, r in zip(idents, results)))
        if args.with_ndr:
            with admin.open_admin(db, write=True) as tables:
                queue = ", ".join(admin.remove_message_with_ndr(tables, args.identity, REMOVED_BY_ADMINISTRATOR))
            return _emit(args, {"identity": args.identity, "removed": True, "with_ndr": True},
                         f"message {args.identity} removed from {queue}; the hub sends the NDR")
        with admin.open_admin(db, write=True) as tables:
            item, recipients, queues, gone = admin.remove_message(tables, args.identity)
        if gone and item.spool is not None:
            item.spool.path.unlink(missing_ok=True)  # the commit is done: the body may go
        queue = ", ".join(queues)
        tracking = tracking_log(config)
        tracking.log(TrackingEvent.DROP, item, "ADMIN", recipients, source_context=queue, custom_data="Remove-Message")
        tracking.close()
        return _emit(args, {"identity": args.identity, "removed": True, "with_ndr": False},
                     f"message {args.identity} removed from {queue}")
    return act(load_config(args.config))
