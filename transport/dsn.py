"""Delivery status notifications as RFC 3464 reports: `multipart/report; report-type=delivery-status`.

A report has three parts: a human-readable text (Exchange's wording: "Delivery has failed to these recipients
or groups", then the diagnostic information for administrators), the `message/delivery-status` part a program
reads (Reporting-MTA, Original-Envelope-Id and Arrival-Date, then per recipient Original-Recipient,
Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code and, for a delay, Will-Retry-Until), and the original: the
whole message (`message/rfc822`) in a failure report unless the sender asked RET=HDRS or it is over the size
limit, its headers only (`text/rfc822-headers`) otherwise. The bytes are written by hand so the original is
returned exactly as it was received.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from email.utils import format_datetime
from datetime import datetime, timezone

from .core.dsn_params import Ret
from .core.events import SmtpResponse
from .core.headers import header_end
from .core.mailitem import MailItem, Recipient

__all__ = ["DsnAction", "ReportedRecipient", "build_report", "is_report", "status_of"]


class DsnAction(str, enum.Enum):
    """RFC 3464 Action values."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    RELAYED = "relayed"


_SUBJECT = {DsnAction.FAILED: "Undeliverable", DsnAction.DELAYED: "Delivery delayed",
            DsnAction.DELIVERED: "Delivered", DsnAction.RELAYED: "Relayed"}
_INTRO = {
    DsnAction.FAILED: "Delivery has failed to these recipients or groups:",
    DsnAction.DELAYED: "Delivery is delayed to these recipients or groups:",
    DsnAction.DELIVERED: "Your message has been delivered to the following recipients:",
    DsnAction.RELAYED: "Delivery to these recipients or groups is complete, but no delivery notification was "
                       "sent by the destination server:",
}
# What Exchange tells the sender for the common status codes (the rest get the generic text).
_EXPLAIN = {
    "5.1.1": "The email address you entered couldn't be found. Please check the recipient's email address and "
             "try to resend the message.",
    "5.4.4": "The recipient's domain couldn't be found in DNS: check the spelling of the address.",
    "5.4.6": "The message was sent in a loop between mail servers and was stopped.",
    "4.4.7": "The message couldn't be delivered in the time allowed; the destination server didn't respond.",
    "5.3.4": "The message is too large for the destination.",
    "5.7.1": "The recipient or its server refused the message: you don't have permission to send to it.",
}
_GENERIC = {DsnAction.FAILED: "The destination server refused the message or couldn't be reached.",
            DsnAction.DELAYED: "Delivery will be tried again; you'll be told if it still fails.",
            DsnAction.DELIVERED: "", DsnAction.RELAYED: ""}

HEADERS_ONLY_OVER = 10 * 1024 * 1024
"""Exchange returns the original whole up to 10 MB; larger, its headers only."""


@dataclass(frozen=True, slots=True)
class ReportedRecipient:
    """One recipient line of a report: the recipient (its address, ORCPT and the reply that settled it)."""

    recipient: Recipient
    action: DsnAction
    will_retry_until: float | None = None
    remote_mta: str = ""  # the next hop whose reply settled it, when one did


def status_of(response: str, action: DsnAction) -> str:
    """The enhanced status code of a reply (`550 5.1.1 …` → `5.1.1`), or the class default when it has none."""
    try:
        parsed = SmtpResponse.parse(response)
    except ValueError:
        parsed = None
    if parsed is not None and parsed.enhanced:
        return parsed.enhanced
    if action in (DsnAction.DELIVERED, DsnAction.RELAYED):
        return "2.0.0"
    if action is DsnAction.DELAYED or (parsed is not None and 400 <= parsed.code < 500):
        return "4.0.0"
    return "5.0.0"


def is_report(item: MailItem) -> bool:
    """A delivery report itself (never answered with another): a null sender or a multipart/report body."""
    content_type = (item.header("Content-Type") or "").lower()
    return not item.sender or ("multipart/report" in content_type and "delivery-status" in content_type)


def _rfc822_date(ts: float) -> str:
    return format_datetime(datetime.fromtimestamp(ts, timezone.utc))


def _delivery_status(item: MailItem, lines: list[ReportedRecipient], reporting_mta: str) -> str:
    """The message/delivery-status body: per-message fields, then one block per recipient."""
    blocks = [[f"Reporting-MTA: dns;{reporting_mta}"]]
    if item.mail_params.get("ENVID"):
        blocks[0].append(f"Original-Envelope-Id: {item.mail_params['ENVID']}")
    blocks[0].append(f"Arrival-Date: {_rfc822_date(item.received_at)}")
    for line in lines:
        r = line.recipient
        block = []
        if r.params.get("ORCPT"):
            block.append(f"Original-Recipient: {r.params['ORCPT']}")
        block += [f"Final-Recipient: rfc822;{r.address}", f"Action: {line.action.value}",
                  f"Status: {status_of(r.response, line.action)}"]
        if line.remote_mta:
            block.append(f"Remote-MTA: dns;{line.remote_mta}")
        if r.response:
            block.append(f"Diagnostic-Code: smtp;{r.response}")
        if line.will_retry_until is not None:
            block.append(f"Will-Retry-Until: {_rfc822_date(line.will_retry_until)}")
        blocks.append(block)
    return "\r\n\r\n".join("\r\n".join(b) for b in blocks) + "\r\n"


def _human(item: MailItem, lines: list[ReportedRecipient], action: DsnAction, reporting_mta: str) -> str:
    out = [_INTRO[action], ""]
    for line in lines:
        status = status_of(line.recipient.response, action)
        out += [line.recipient.address, _EXPLAIN.get(status, _GENERIC[action]), ""]
    out += ["", "Diagnostic information for administrators:", "", f"Generating server: {reporting_mta}", ""]
    for line in lines:
        out.append(line.recipient.address)
        if line.recipient.response:
            out.append(f"Remote server returned '{line.recipient.response}'")
        out.append("")
    subject = item.subject
    out.append(f"Original message: {item.message_id or '(no Message-ID)'}" + (f", subject: {subject}" if subject else ""))
    return "\r\n".join(out) + "\r\n"


def attaches_whole(item: MailItem, action: DsnAction, headers_only_over: int = HEADERS_ONLY_OVER) -> bool:
    """Whether the report carries the whole original (RET=FULL, or a failure without RET=HDRS, up to the size
    limit) rather than its header block."""
    ret = item.mail_params.get("RET", "").upper()
    return (ret == Ret.FULL.value or (action is DsnAction.FAILED and ret != Ret.HDRS.value)) \
        and item.size <= headers_only_over


def build_report(item: MailItem, lines: list[ReportedRecipient], action: DsnAction, reporting_mta: str,
                 postmaster: str, headers_only_over: int = HEADERS_ONLY_OVER, *, date: float) -> bytes:
    """The whole report message (headers and body) about `item` for these recipients, from `postmaster`, dated
    `date` (seconds since the epoch, on the hub's clock)."""
    boundary = f"=_dsn_{uuid.uuid4().hex}"
    if attaches_whole(item, action, headers_only_over):
        original_type, original = "message/rfc822", item.content()
    else:  # the header block is in memory even when the body is spooled
        original_type, original = "text/rfc822-headers", item.raw[:header_end(item.raw)]
    subject = item.header("Subject")
    head = [
        f"From: Postmaster <{postmaster}>",
        f"To: <{item.sender}>",
        f"Date: {_rfc822_date(date)}",
        f"Subject: {_SUBJECT[action]}: {subject}" if subject is not None else f"Subject: {_SUBJECT[action]}",
        f"Message-ID: <{uuid.uuid4()}@{reporting_mta}>",
    ]
    if item.message_id:
        head += [f"In-Reply-To: {item.message_id}", f"References: {item.message_id}"]
    head += ["MIME-Version: 1.0", "Auto-Submitted: auto-replied",
             f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"']
    if action is DsnAction.FAILED:
        head.append("X-MS-Exchange-Message-Is-Ndr: ")
    parts = [
        ("text/plain; charset=utf-8", "8bit", _human(item, lines, action, reporting_mta).encode("utf-8", "replace")),
        ("message/delivery-status", "7bit",
         _delivery_status(item, lines, reporting_mta).encode("utf-8", "surrogateescape")),
        (original_type, "7bit" if original[:65536].isascii() else "8bit", original),
    ]
    out = ["\r\n".join(head).encode("utf-8", "surrogateescape"), b"\r\n\r\n",
           b"This is a MIME-formatted message.\r\n"]
    for ctype, cte, body in parts:
        out.append(f"\r\n--{boundary}\r\nContent-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n".encode())
        out.append(body if body.endswith(b"\n") else body + b"\r\n")
    out.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(out)
