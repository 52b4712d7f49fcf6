"""Exchange's rules for a Pickup directory file: turning an .eml into a mail item, or saying why it cannot be.

A pickup file is an RFC 5322 message whose envelope comes from its own headers (reference §6):
- the envelope sender is the one address in From, even when Sender is present; several From addresses need
  a Sender with exactly one address, which is then the envelope sender; Sender never holds more than one;
- the envelope recipients are every address in To, Cc and Bcc (at most PickupDirectoryMaxRecipientsPerMessage);
- leading X-Sender / X-Receiver headers, where present, give the envelope instead (as in a replay file);
- the header block may not exceed PickupDirectoryMaxHeaderSize.
Content edits: Bcc, Received and Resent-* fields are removed (a Bcc-only message gets `To: Undisclosed
Recipients:;`), Message-ID and Date are added when missing, `Received: from localhost by Pickup …` goes on
top. Organisation headers (X-MS-Exchange-Organization-*) are removed: a dropped file is not trusted to set
its own SCL. Session facts are read before the Received lines go (see pickup.session).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from email.utils import formatdate
from typing import Callable

from transport.core.replay_format import ReplayFormatError, read_injected
from transport.core.errors import BadFileError
from transport.core.config import DirectorySettings, PickupDirectory, TransportConfig
from transport.core.events import SmtpResponse
from transport.core.headers import (ORGANIZATION_HEADER_PREFIX, SERVER_VERSION, addresses, date_now, header_end,
                                    not_a_message)
from transport.core.mailitem import MailItem, Recipient, RecipientStatus, Source, new_message_id

from .session import simulated_session

__all__ = ["Conversion", "DirectoryRules", "PickupRules", "INVALID_RECIPIENT"]

INVALID_RECIPIENT = SmtpResponse(550, "5.1.3", "Invalid recipient address")
_UNTRUSTED_PREFIXES = ("resent-", ORGANIZATION_HEADER_PREFIX.lower())


@dataclass(slots=True)
class Conversion:
    """A file as a mail item with its session facts, and the Received line the directory stamps on it."""

    item: MailItem
    received: str
    trusted: bool = False  # a replay file a hub wrote: its organisation headers stay, no new stamps
    kept: bytes | None = None  # the copy the sender keeps once it is queued (the store driver's Sent Items)


class DirectoryRules:
    """What the Pickup and Replay rules share: the header size limit and the Received line."""

    source = Source.PICKUP
    received_by = "Pickup"

    def __init__(self, settings: DirectorySettings, config: TransportConfig,
                 is_internal: Callable[[str], bool]) -> None:
        self.settings = settings
        self.config = config
        self.is_internal = is_internal

    def convert(self, raw: bytes, name: str) -> Conversion:
        raise NotImplementedError

    def takes(self, name: str) -> bool:
        """Whether a file of that name in the folder is a message to claim (Pickup and Replay: `*.eml`)."""
        return name[-4:].lower() == ".eml"

    def file_queued(self, claimed: Path, kept: bytes | None) -> None:
        """Dispose of a claimed file whose message is queued (or was, before a crash: `kept` is then None).
        Pickup and Replay delete it; blocking, called off the event loop."""
        claimed.unlink()

    def check_shape(self, raw: bytes) -> None:
        """Files that are no message at all are said to be what they are, before any rule looks inside."""
        problem = not_a_message(raw)
        if problem:
            raise BadFileError(problem)
        self.check_header_size(raw)

    def check_header_size(self, raw: bytes) -> None:
        size, limit = header_end(raw), self.settings.max_header_size
        if size > limit:
            raise BadFileError(f"the header block is {size} bytes, over PickupDirectoryMaxHeaderSize ({limit} bytes)")

    def received(self, from_host: str) -> str:
        return (f"from {from_host} by {self.received_by} with Microsoft SMTP Server id {SERVER_VERSION}; "
                f"{date_now()}")


_PLAIN_LIST = re.compile(r'[^"()\\:;]*')  # no quoted strings, comments, groups or escapes
_ANGLE_ADDR = re.compile(r"<([^<>]*)>")
_WHITESPACE = re.compile(r"\s")


def _addresses(values: list[str]) -> list[str]:
    """The addresses in address-list fields; plain lists skip the email package's slow full parser."""
    found = []
    for value in values:
        if _PLAIN_LIST.fullmatch(value):
            for part in value.split(","):
                angle = _ANGLE_ADDR.search(part)
                address = (angle.group(1) if angle else part).strip()
                if address:
                    found.append(address)
        else:
            found.extend(address for _, address in addresses([value]) if address)
    return found


def _is_smtp_address(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain) and _WHITESPACE.search(address) is None


class PickupRules(DirectoryRules):
    """Exchange's Pickup directory rules (see the module docstring)."""

    settings: PickupDirectory

    def convert(self, raw: bytes, name: str) -> Conversion:
        self.check_shape(raw)
        try:
            injected = read_injected(raw)
        except ReplayFormatError as e:
            raise BadFileError(str(e)) from None
        item = MailItem(sender="", recipients=[], raw=raw[injected.end:], source=Source.PICKUP)
        item.session = simulated_session(item, name, self.is_internal, injected.helo, injected.source_ip)
        if injected.sender is not None:
            item.sender, item.mail_params = injected.sender, injected.mail_params
        else:
            item.sender = self._envelope_sender(item)
        item.recipients = injected.recipients or self._envelope_recipients(item)
        limit = self.settings.max_recipients_per_message
        if len(item.recipients) > limit:
            raise BadFileError(f"the message has {len(item.recipients)} recipients, over "
                          f"PickupDirectoryMaxRecipientsPerMessage ({limit})", item)
        self._edit_content(item)
        return Conversion(item, self.received("localhost"))

    def _envelope_sender(self, item: MailItem) -> str:
        senders = _addresses(item.header_values("Sender"))
        froms = _addresses(item.header_values("From"))
        if len(senders) > 1:
            raise BadFileError(f"the Sender field holds {len(senders)} addresses; it may hold only one", item)
        if len(froms) > 1 and not senders:
            raise BadFileError(f"the From field holds {len(froms)} addresses, so a Sender field naming one of them "
                          "is required", item)
        chosen = froms[0] if len(froms) == 1 else senders[0] if senders else None
        if chosen is None:
            raise BadFileError("there is no sender: neither From nor Sender holds an address", item)
        if not _is_smtp_address(chosen):
            raise BadFileError(f"the sender {chosen!r} is not an SMTP address", item)
        return chosen

    def _envelope_recipients(self, item: MailItem) -> list[Recipient]:
        seen: dict[str, Recipient] = {}
        for address in _addresses(item.header_values("To") + item.header_values("Cc") + item.header_values("Bcc")):
            if address.lower() not in seen:
                recipient = Recipient(address)
                if not _is_smtp_address(address):
                    recipient.status, recipient.response = RecipientStatus.FAILED, str(INVALID_RECIPIENT)
                seen[address.lower()] = recipient
        if not seen:
            raise BadFileError("there are no recipients: To, Cc and Bcc hold no address", item)
        if not any(r.status is RecipientStatus.READY for r in seen.values()):
            raise BadFileError("no recipient is an SMTP address: " + ", ".join(r.address for r in seen.values()), item)
        return list(seen.values())

    def _edit_content(self, item: MailItem) -> None:
        keys = {h.key for h in item.headers}
        added = []
        if "bcc" in keys and "to" not in keys and "cc" not in keys:
            added.append(("To", "Undisclosed Recipients:;"))
        if not item.message_id:
            added.append(("Message-ID", new_message_id(self._default_domain())))
        if "date" not in keys:
            added.append(("Date", formatdate(localtime=True)))
        if "received" in keys or "bcc" in keys:
            item.remove_headers(["received", "bcc"])
        if any(k.startswith(_UNTRUSTED_PREFIXES) for k in keys):
            item.remove_headers(_UNTRUSTED_PREFIXES, prefix=True)
        if added:
            item.append_headers(added)

    def _default_domain(self) -> str:
        domains = [d.domain for d in self.config.accepted_domains if not d.domain.startswith("*.")]
        return domains[0] if domains else self.config.receive.fqdn
