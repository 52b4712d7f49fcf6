"""The SMTP protocol log: every command and reply of a connector's sessions, as Exchange's SmtpReceive and SmtpSend
logs have them (`RECVyyyymmdd-N.log` under `logs/ProtocolLog/SmtpReceive/`, `SENDyyyymmdd-N.log` under
`SmtpSend/`), off unless a connector's ProtocolLoggingLevel is Verbose.

Fields: date-time, connector-id, session-id, sequence-number (per session, from 0), local-endpoint,
remote-endpoint, event (`+` connect, `-` disconnect, `>` sent, `<` received, `*` information), data, context.
The receive side writes it from `transport.protocol_logging`; a send connector writes through the same class
(`protocol_log(config, Direction.SEND).session(...)`).
"""

from __future__ import annotations

import enum
import itertools
from pathlib import Path
from typing import TYPE_CHECKING

from .clock import Clock, real_time
from .config_types import ProtocolLoggingLevel
from .logfile import MB, RollingLog

if TYPE_CHECKING:
    from .config import TransportConfig

__all__ = ["Direction", "FIELDS", "masked", "ProtocolEvent", "ProtocolLog", "ProtocolLoggingLevel", "ProtocolSession", "protocol_log"]

class ProtocolEvent(enum.StrEnum):
    """The event column."""

    CONNECT = "+"
    DISCONNECT = "-"
    SEND = ">"
    RECEIVE = "<"
    INFORMATION = "*"


FIELDS = ("date-time", "connector-id", "session-id", "sequence-number", "local-endpoint", "remote-endpoint",
          "event", "data", "context")


class ProtocolLog:
    """One writer for every session of one direction (receive or send)."""

    def __init__(self, folder: Path, prefix: str, log_type: str, max_age_days: float = 30,
                 max_file_size: int = 10 * MB, max_directory_size: int = 250 * MB, clock: Clock = real_time) -> None:
        self.folder = folder
        self.file = RollingLog(folder, prefix, log_type, FIELDS, max_file_size=max_file_size,
                               max_age_days=max_age_days, max_directory_size=max_directory_size, clock=clock)

    def session(self, connector_id: str, session_id: str, local: str, remote: str) -> "ProtocolSession":
        return ProtocolSession(self, connector_id, session_id, local, remote)

    def write(self, row: tuple) -> None:
        self.file.write((self.file.now(),) + row)

    def close(self) -> None:
        self.file.close()


class ProtocolSession:
    """One session's rows, numbered in order."""

    def __init__(self, log: ProtocolLog, connector_id: str, session_id: str, local: str, remote: str) -> None:
        self.log = log
        self.head = (connector_id, session_id)
        self.endpoints = (local, remote)
        self._sequence = itertools.count()

    def write(self, event: ProtocolEvent, data: str = "", context: str = "") -> None:
        self.log.write(self.head + (next(self._sequence),) + self.endpoints + (event.value, data, context))


def masked(line: str, secret: bool = False) -> str:
    """A command line as the log shows it: `****` for a line answering an AUTH challenge (`secret`), and the
    initial response of `AUTH PLAIN <credentials>` replaced by `****`."""
    if secret:
        return "****"
    words = line.split()
    return " ".join(words[:2]) + " ****" if len(words) > 2 and words[0].upper() == "AUTH" else line


class Direction(enum.Enum):
    """(folder, file prefix, log type) of each protocol log."""

    RECEIVE = ("SmtpReceive", "RECV", "SMTP Receive Protocol Log")
    SEND = ("SmtpSend", "SEND", "SMTP Send Protocol Log")


def protocol_log(config: "TransportConfig", direction: Direction, clock: Clock = real_time) -> ProtocolLog:
    """The configuration's protocol log of that direction, `<data root>/logs/ProtocolLog/SmtpReceive/` (or SmtpSend)."""
    s = config.protocol_log
    folder, prefix, log_type = direction.value
    return ProtocolLog(config.data_root / "logs" / "ProtocolLog" / folder, prefix, log_type,
                       s.max_age_days, s.max_file_size, s.max_directory_size, clock)
