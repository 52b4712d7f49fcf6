"""Send As and Send on Behalf: may a mailbox user send a message whose From is someone else?

Exchange checks the From of what a user submits against the rights of the directory: the user's own address
passes, a mailbox that granted the user Send As passes as it is, a mailbox that granted Send on Behalf passes
with `Sender:` naming the user (so recipients read "alice on behalf of bob"), and anything else is refused: from
the Outbox with an NDR (`554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException…`), over authenticated
SMTP at end of data (`550 5.7.60 SMTP; Client does not have permissions to send as this sender`).

Over SMTP only a From naming a mailbox of the directory is checked; a user writing as an outside address is
left to the anti-spam agents, as before.
"""

from __future__ import annotations

import enum

from .core.config import TransportConfig
from .core.events import SmtpResponse
from .core.headers import addresses
from .core.mailitem import MailItem

__all__ = ["SendRight", "SEND_AS_DENIED_SMTP", "SEND_AS_DENIED_STOREDRV", "from_address", "send_right", "smtp_refusal"]

SEND_AS_DENIED_SMTP = SmtpResponse(550, "5.7.60", "SMTP; Client does not have permissions to send as this sender")
SEND_AS_DENIED_STOREDRV = SmtpResponse(
    554, "5.2.0", "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process "
    "message due to a permanent exception with message Cannot submit message.")


class SendRight(enum.Enum):
    """What lets (or does not let) a user send with a given From."""

    SELF = "self"                       # From is the user's own mailbox
    SEND_AS = "SendAs"                  # the From mailbox granted the user Send As
    SEND_ON_BEHALF = "SendOnBehalf"     # the From mailbox granted the user Send on Behalf: Sender: is stamped
    DENIED = "denied"


def from_address(item: MailItem) -> str | None:
    """The address in From, lower-cased; None when From holds none (or several, which needs a Sender)."""
    found = [a for _, a in addresses(item.header_values("From")) if a]
    return found[0].strip().lower() if len(found) == 1 else None


def send_right(config: TransportConfig, user: str, sender: str) -> SendRight:
    """What lets `user` (a mailbox) send a message whose From is `sender`."""
    user, sender = user.lower(), sender.lower()
    if user == sender:
        return SendRight.SELF
    owner = config.mailbox(sender)
    if owner is not None and user in owner.send_as:
        return SendRight.SEND_AS
    if owner is not None and user in owner.send_on_behalf:
        return SendRight.SEND_ON_BEHALF
    return SendRight.DENIED


def smtp_refusal(config: TransportConfig, item: MailItem) -> SmtpResponse | None:
    """The reply refusing an authenticated SMTP submission whose From is a mailbox that granted the user
    neither Send As nor Send on Behalf, or None. (With Send on Behalf the message goes on; a missing Sender is
    added naming the user.)"""
    sender = from_address(item)
    user = item.session.auth_user
    if not user or sender is None or config.mailbox(sender) is None:
        return None
    right = send_right(config, user, sender)
    if right is SendRight.DENIED:
        return SEND_AS_DENIED_SMTP
    if right is SendRight.SEND_ON_BEHALF and item.header("Sender") is None:
        item.append_headers([("Sender", user)])
    return None
