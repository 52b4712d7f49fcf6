"""The store driver's submission: what a user puts in the mailbox's Outbox is sent, and kept in Sent Items.

In Exchange the Mailbox Transport Submission service takes a message from the Outbox of the mailbox that sent
it and hands it to transport, authenticated as that mailbox; once transport has it, the message moves to Sent
Items. Here each mailbox's Maildir++ `.Outbox/new/` is watched by the Pickup directory's watcher
(`pickup.watcher.DirectoryWatcher`: claim, convert, submit, and a claim committed with the message so a crash
neither loses nor repeats it) with these rules:

- the envelope sender is the mailbox's primary address; the recipients are To, Cc and Bcc; Bcc is removed from
  what is sent, kept in the Sent Items copy; Message-ID (made from the content, so a file resubmitted after a
  crash keeps it) and Date are added when missing, From too (the mailbox) when the client left it out;
- From must be the mailbox itself or one that granted it Send As; one that granted Send on Behalf gets
  `Sender:` = this mailbox; anything else is submitted with every recipient failed
  (`554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException…`): FAIL is tracked and nothing is delivered;
- the session is the mailbox's (AuthAs Internal, authenticated as the address), so the anti-spam agents treat
  the message as the organisation's own, Exchange's gating;
- only once the message is committed to the Submission queue is the file moved to `.Sent Items/cur/`, read.

Where this differs from Exchange: any file in `new/` is a message (no MAPI), a file that is no message goes to
badmail like a Pickup file, and a refused Send As still leaves the user's copy in Sent Items (as Outlook shows it
beside the NDR).
"""

from __future__ import annotations

import hashlib
import os
import socket
from email.utils import formatdate
from pathlib import Path
from typing import Callable

from pickup.rules import Conversion, PickupRules

from .core.config import StoreDriverSettings, TransportConfig
from .core.errors import BadFileError
from .core.headers import SERVER_VERSION, append_headers, date_now, parse_headers
from .core.mailitem import AuthAs, MailItem, RecipientStatus, SessionInfo, Source
from .delivery.mailbox import SENT_ITEMS_FOLDER
from .send_as import SEND_AS_DENIED_STOREDRV, SendRight, from_address, send_right

__all__ = ["OutboxRules", "outbox"]


def outbox(maildir: Path, settings: StoreDriverSettings) -> Path | None:
    """The folder the store driver watches for a mailbox (its Outbox's `new/`), or None when it is off."""
    return None if settings.path is None else maildir / settings.path / "new"


class OutboxRules(PickupRules):
    """The store driver's rules for one mailbox's Outbox (see the module docstring); Pickup's recipient and
    content rules apply."""

    source = Source.STOREDRIVER
    received_by = "STOREDRIVER"
    settings: StoreDriverSettings  # type: ignore[assignment]

    def __init__(self, settings: StoreDriverSettings, config: TransportConfig, is_internal: Callable[[str], bool],
                 address: str, maildir: Path) -> None:
        super().__init__(settings, config, is_internal)  # type: ignore[arg-type]
        mailbox = config.mailbox(address)
        assert mailbox is not None, address
        self.mailbox = mailbox
        self.sent_items = maildir / SENT_ITEMS_FOLDER
        self._host = socket.gethostname().replace("/", "_").replace(":", "_")

    def takes(self, name: str) -> bool:
        """Any file a mail client leaves in `new/` (Maildir names need no `.eml`); not our `.tmp` claims."""
        return not name.startswith(".") and not name.endswith(".tmp")

    def convert(self, raw: bytes, name: str) -> Conversion:
        address = self.mailbox.address
        try:
            self.check_shape(raw)
        except BadFileError as e:  # the badmail row names the mailbox that sent it
            raise BadFileError(str(e), MailItem(sender=address, recipients=[], raw=raw, source=self.source,
                                                session=self._session(name))) from None
        kept, right = self._prepare(raw, formatdate(localtime=True))
        item = MailItem(sender=address, recipients=[], raw=kept, source=self.source, session=self._session(name))
        item.recipients = self._envelope_recipients(item)
        if right is SendRight.DENIED:
            for r in item.recipients:
                r.status, r.response = RecipientStatus.FAILED, str(SEND_AS_DENIED_STOREDRV)
        self._edit_content(item)
        fqdn = self.config.receive.fqdn
        return Conversion(item, f"from {fqdn} by {fqdn} with mapi id {SERVER_VERSION}; {date_now()}", kept=kept)

    def _session(self, name: str) -> SessionInfo:
        return SessionInfo(session_id=name, client_ip="127.0.0.1", helo=self.config.receive.fqdn, esmtp=True,
                           auth_user=self.mailbox.address, auth_mechanism="MAPI", auth_as=AuthAs.INTERNAL)

    def _prepare(self, raw: bytes, date: str) -> tuple[bytes, SendRight]:
        """The message as the user sent it, completed: From, Sender on behalf, Message-ID and Date when missing.
        The same file always gets the same Message-ID (made from its content and the mailbox)."""
        keys = {h.key for h in parse_headers(raw)}
        added: list[tuple[str, str]] = []
        mailbox = self.mailbox
        if "from" not in keys:
            added.append(("From", f"{mailbox.display_name} <{mailbox.address}>" if mailbox.display_name else mailbox.address))
            right = SendRight.SELF
        else:
            sender = from_address(MailItem(sender="", recipients=[], raw=raw))
            right = send_right(self.config, mailbox.address, sender) if sender else SendRight.DENIED
        if right is SendRight.SEND_ON_BEHALF and "sender" not in keys:
            added.append(("Sender", mailbox.address))
        if "message-id" not in keys:
            digest = hashlib.sha256(mailbox.address.encode() + b"\0" + raw).hexdigest()[:32]
            added.append(("Message-ID", f"<{digest}@{mailbox.address.rpartition('@')[2]}>"))
        if "date" not in keys:
            added.append(("Date", date))
        return (append_headers(raw, added) if added else raw), right

    def file_queued(self, claimed: Path, kept: bytes | None) -> None:
        """Move the user's copy into Sent Items (`cur/`, marked read), then remove the claimed file. The copy's
        name comes from the claimed file (its time and inode), so a copy written before a crash is replaced,
        never doubled."""
        st = claimed.stat()
        if kept is None:  # queued before a crash: complete the file as it was completed then
            kept = self._prepare(claimed.read_bytes(), formatdate(st.st_mtime, localtime=True))[0]
        name = f"{st.st_mtime_ns // 1000}.I{st.st_ino}.{self._host}"
        for sub in ("tmp", "cur", "new"):
            (self.sent_items / sub).mkdir(parents=True, exist_ok=True)
        tmp = self.sent_items / "tmp" / name
        with open(tmp, "wb") as f:
            f.write(kept)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.sent_items / "cur" / f"{name}:2,S")
        fd = os.open(self.sent_items / "cur", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        claimed.unlink()
