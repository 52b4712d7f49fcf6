"""What a source of mail (SMTP receive, the Pickup and Replay directories, the store driver, an agent) is
handed: the submission path, seen as the small interface it needs and nothing of the hub behind it.

The hub builds one `transport.submission.Submission` and gives it to every source; sources type against
`SubmissionPath` here, so `pickup/` and `replay/` depend on the core alone, as aiosmtpd's protocol depends only
on the handler object it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .events import MessageEvent
    from .mailitem import MailItem
    from .pipeline import Pipeline
    from .tracking import TrackingLog

__all__ = ["FileClaim", "FileClaims", "Receipt", "SubmissionPath"]


@dataclass(frozen=True, slots=True)
class FileClaim:
    """A claimed file a message came from (Pickup, Replay, Outbox), recorded in the message's own commit so a
    crash between queuing the message and deleting the file never submits it twice."""

    directory: str
    name: bytes  # the file name as the file system spells it: any name fits, UTF-8 or not
    sha256: str


class FileClaims(Protocol):
    """The claim records the queue store keeps for directory sources."""

    def claimed(self, directory: str) -> dict[str, str]:
        """The claims recorded for a directory: file name → SHA-256 of its content."""

    async def forget_directory(self, directory: str) -> None:
        """Drop every claim record of a directory (after its leftovers are settled at start-up)."""

    async def forget_messages(self, message_ids: list[int]) -> None:
        """Drop the claim records of messages whose files are gone."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """What became of a message handed to the submission path.

    Queued: `internal_id` is its identity. Ended by an agent at end of headers or end of data: `ended` is that
    event (its action REJECT with a response, DELETE, or DISCONNECT) and nothing was queued.
    """

    internal_id: int | None = None
    ended: "MessageEvent | None" = None


class SubmissionPath(Protocol):
    """The one way into the Submission queue, as every source sees it."""

    pipeline: "Pipeline"
    tracking: "TrackingLog"
    claims: FileClaims
    spool_folder: Path
    """Where large message bodies are written as they arrive (the queue store takes them over)."""

    def is_internal(self, ip: str) -> bool:
        """Whether the address is one of the organisation's InternalSMTPServers."""

    @property
    def back_pressure(self) -> bool:
        """Whether sources should hold off (SMTP answers 452 4.3.1 at MAIL FROM, directories stop claiming)."""

    async def receive(self, item: "MailItem", received: str | None = None, trusted: bool = False,
                      run_agents: bool = True, claim: FileClaim | None = None) -> Receipt:
        """Stamp, run the message events, and durably queue the message (see `transport.submission`)."""
