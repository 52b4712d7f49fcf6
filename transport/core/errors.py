"""One exception root for the project, so the `transport` command catches one type and prints a sentence.

Each subclass stands for one kind of problem a user can be told about: a configuration that will not load,
an agent that cannot be loaded, a queue database that refuses a write, a dropped file that is not a message,
an administrative request that names something that is not there, a DNS lookup that fails. The text of every
one is already a sentence (or `file:line: key: problem` lines); nothing here is shown as a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .mailitem import MailItem

__all__ = ["TransportError", "ConfigError", "AgentLoadError", "StoreError", "HandOverError", "BadFileError",
           "AdminError", "HubLockedError"]


class TransportError(Exception):
    """Root of every error the project raises on purpose."""


class ConfigError(TransportError):
    """A configuration problem, already phrased as `file:line: key: problem` lines."""


class AgentLoadError(TransportError):
    """An agent named in the configuration cannot be loaded or configured (one readable line).

    `path` is where in the configuration the problem is, e.g. ("agents", 2, "class").
    """

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


class StoreError(TransportError):
    """The queue database could not do what was asked (disk full, corrupt file, closed store)."""


class HandOverError(StoreError):
    """A receive worker could not hand a message to the hub's process (gone, or the message cannot cross)."""


class BadFileError(TransportError):
    """A dropped file that cannot be submitted; the message is the reason written beside it in badmail/.

    `item` is the mail item as far as it could be built, so the BADMAIL tracking row can name its sender.
    """

    def __init__(self, reason: str, item: "MailItem | None" = None) -> None:
        super().__init__(reason)
        self.item = item


class AdminError(TransportError):
    """A queue or message request that names something that is not there, or asks what Exchange would refuse."""


class HubLockedError(TransportError):
    """Another hub already runs on this data root."""
