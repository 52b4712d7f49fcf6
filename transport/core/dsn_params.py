"""What a sender asked of delivery status notifications (RFC 3461), and who sends them.

MAIL FROM carries RET (FULL or HDRS: how much of the original a report returns) and ENVID (the sender's own
identifier, echoed in every report); each RCPT TO carries NOTIFY (NEVER, or any of SUCCESS, FAILURE, DELAY)
and ORCPT (the original recipient address, `rfc822;alice@contoso.com`). They travel on the mail item as its
`mail_params` and each recipient's `params`, and so survive a restart in the queue store with the envelope.

`Notifier` is the component that sends the reports (`transport.notifications.Notifications`); the queue
scheduler and the delivery queues type against it here, so they depend on the core alone.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .mailitem import MailItem, Recipient

__all__ = ["Notify", "Ret", "notify_of", "wants", "dsn_param_problem", "Notifier"]


class Notify(str, enum.Enum):
    """RFC 3461 NOTIFY values."""

    NEVER = "NEVER"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    DELAY = "DELAY"


class Ret(str, enum.Enum):
    """RFC 3461 RET values: the whole original in a failure report, or its headers only."""

    FULL = "FULL"
    HDRS = "HDRS"


def notify_of(recipient: "Recipient") -> frozenset[Notify] | None:
    """The recipient's NOTIFY values, or None when it gave none (then failures and delays are reported)."""
    value = recipient.params.get("NOTIFY")
    if not value:
        return None
    return frozenset(Notify(v) for v in value.upper().split(",") if v in Notify.__members__)


def wants(recipient: "Recipient", kind: Notify) -> bool:
    """Whether a report of this kind is due for the recipient (RFC 3461 §4.1: without NOTIFY, FAILURE and
    DELAY are reported and SUCCESS is not)."""
    asked = notify_of(recipient)
    if asked is None:
        return kind in (Notify.FAILURE, Notify.DELAY)
    return kind in asked


def dsn_param_problem(params: dict[str, str]) -> str | None:
    """Why a MAIL or RCPT command's DSN parameters are malformed (the 501 reply's text), or None."""
    ret = params.get("RET")
    if ret is not None and ret.upper() not in Ret.__members__:
        return "Invalid RET parameter"
    envid = params.get("ENVID")
    if envid is not None and (not envid or len(envid) > 100):
        return "Invalid ENVID parameter"
    notify = params.get("NOTIFY")
    if notify is not None:
        values = notify.upper().split(",")
        if not values or any(v not in Notify.__members__ for v in values) or \
                ("NEVER" in values and len(values) > 1):
            return "Invalid NOTIFY parameter"
    orcpt = params.get("ORCPT")
    if orcpt is not None:
        kind, semi, address = orcpt.partition(";")
        if not semi or not kind or not address:
            return "Invalid ORCPT parameter"
    return None


class Notifier(Protocol):
    """Sends delivery status notifications through the submission path (see `transport.notifications`)."""

    async def ndr(self, item: "MailItem", recipients: "list[Recipient]", remote_mta: str = "") -> int | None:
        """A non-delivery report for these recipients (each carrying the reply that failed it; `remote_mta`, the
        next hop that gave the reply); the report's internal id, or None when none is due."""

    async def delay(self, item: "MailItem", recipients: "list[Recipient]") -> int | None:
        """A delay notice for recipients still waiting to be delivered."""

    async def success(self, item: "MailItem", recipients: "list[Recipient]", relayed: bool = False,
                      remote_mta: str = "") -> int | None:
        """A success notice (delivered, or relayed to a server that does not pass DSN requests on) for the
        recipients that asked for one with NOTIFY=SUCCESS."""
