"""Where a Spam Confidence Level sends a message, per recipient: the one decision the content filter, mailbox
delivery and anything that explains a message's path (a trace) all ask.

Exchange's order (reference §3.5), each agent threshold compared with ``>=`` when enabled: delete, then reject,
then quarantine (only when a quarantine mailbox exists); what is left is delivered, to Junk when the SCL is
*above* SCLJunkThreshold. The thresholds are the content filter's (Set-ContentFilterConfig) and the
organisation's junk threshold (Set-OrganizationConfig); a mailbox's own settings (Set-Mailbox -SCL…) override
each of them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["SclAction", "SclThresholds"]


class SclAction(str, enum.Enum):
    """What an SCL makes of one recipient's copy."""

    DELETE = "Delete"
    REJECT = "Reject"
    QUARANTINE = "Quarantine"
    JUNK = "Junk"
    INBOX = "Inbox"


_OVERRIDES = ("delete_enabled", "delete_threshold", "reject_enabled", "reject_threshold", "quarantine_enabled",
              "quarantine_threshold", "junk_enabled", "junk_threshold")


@dataclass(frozen=True, slots=True)
class SclThresholds:
    """One set of thresholds; `for_mailbox` applies a mailbox's overrides (Set-Mailbox's SCL* settings)."""

    delete_enabled: bool = False
    delete_threshold: int = 9
    reject_enabled: bool = False
    reject_threshold: int = 7
    quarantine_enabled: bool = False
    quarantine_threshold: int = 9
    junk_enabled: bool = True
    junk_threshold: int = 4
    quarantine_mailbox: str | None = None

    def for_mailbox(self, mailbox: Any) -> "SclThresholds":
        """These thresholds with the mailbox's own settings (a config Mailbox's `scl_*` that are not None) in
        their place; None (no such mailbox) changes nothing."""
        if mailbox is None:
            return self
        changes = {name: value for name in _OVERRIDES if (value := getattr(mailbox, "scl_" + name)) is not None}
        return replace(self, **changes) if changes else self

    def action(self, scl: int | None) -> SclAction:
        """Delete, reject, quarantine (at or above each enabled threshold), else Junk or Inbox."""
        if scl is None or scl < 0:
            return SclAction.INBOX
        if self.delete_enabled and scl >= self.delete_threshold:
            return SclAction.DELETE
        if self.reject_enabled and scl >= self.reject_threshold:
            return SclAction.REJECT
        if self.quarantine_enabled and self.quarantine_mailbox and scl >= self.quarantine_threshold:
            return SclAction.QUARANTINE
        return SclAction.JUNK if self.moves_to_junk(scl) else SclAction.INBOX

    def moves_to_junk(self, scl: int | None) -> bool:
        """SCL above SCLJunkThreshold (strictly, as Exchange moves mail), when the junk move is enabled."""
        return scl is not None and self.junk_enabled and scl > self.junk_threshold
