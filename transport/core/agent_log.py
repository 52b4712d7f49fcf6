"""The agent log: one row for every verdict an agent gives and every error an agent raises, at any event.

Files are `AGENTLOGyyyymmdd-N.log` under `<data root>/logs/AgentLog/`, with Exchange's fields (Timestamp,
SessionId, LocalEndpoint, RemoteEndpoint, EnteredOrgFromIP, MessageId, P1FromAddress, P2FromAddresses,
Recipient, NumRecipients, Agent, Event, Action, SmtpResponse, Reason, ReasonData). The pipeline writes it, so
every agent (built-in or custom) shows up without doing anything. Exchange writes rows for the anti-spam agents'
rejections; we also write stamps (`AcceptMessage` with the reason) and errors (`AgentError`), which says why a
message went where it went.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING

from .clock import Clock, real_time
from .events import Action, CommandEvent, ConnectEvent, Event, ReceiveEvent
from .logfile import MB, RollingLog
from .mailitem import Stamp, Verdict

if TYPE_CHECKING:
    from .config import TransportConfig

__all__ = ["AgentAction", "AgentLog", "FIELDS", "action_of", "agent_log"]

FIELDS = ("Timestamp", "SessionId", "LocalEndpoint", "RemoteEndpoint", "EnteredOrgFromIP", "MessageId",
          "P1FromAddress", "P2FromAddresses", "Recipient", "NumRecipients", "Agent", "Event", "Action",
          "SmtpResponse", "Reason", "ReasonData")


class AgentAction(enum.StrEnum):
    """The Action column, in Exchange's words (AgentError is ours)."""

    ACCEPT_MESSAGE = "AcceptMessage"
    REJECT_CONNECTION = "RejectConnection"
    REJECT_COMMAND = "RejectCommand"
    REJECT_MESSAGE = "RejectMessage"
    DELETE_MESSAGE = "DeleteMessage"
    QUARANTINE_MESSAGE = "QuarantineMessage"
    DISCONNECT = "Disconnect"
    DEFER = "Defer"
    AGENT_ERROR = "AgentError"


def action_of(event: Event) -> AgentAction:
    """The agent log's name for what the event's agent did."""
    if event.action is Action.REJECT:
        if isinstance(event, ConnectEvent):
            return AgentAction.REJECT_CONNECTION
        return AgentAction.REJECT_COMMAND if isinstance(event, CommandEvent) else AgentAction.REJECT_MESSAGE
    return {Action.DISCONNECT: AgentAction.DISCONNECT, Action.QUARANTINE: AgentAction.QUARANTINE_MESSAGE,
            Action.DELETE: AgentAction.DELETE_MESSAGE, Action.DEFER: AgentAction.DEFER}.get(
        event.action, AgentAction.ACCEPT_MESSAGE)


class AgentLog:
    """Writes the rows; `record` is what the pipeline calls after a hook that acted, stamped or raised."""

    def __init__(self, folder: Path, max_age_days: float = 7, max_file_size: int = 10 * MB,
                 max_directory_size: int = 250 * MB, clock: Clock = real_time) -> None:
        self.folder = folder
        self.file = RollingLog(folder, "AGENTLOG", "Agent Log", FIELDS, max_file_size=max_file_size,
                               max_age_days=max_age_days, max_directory_size=max_directory_size, clock=clock)

    def record(self, agent: str, event: Event, verdicts: list[Verdict], error: BaseException | None) -> None:
        """One row per new verdict of the hook (or one for its action, or its error)."""
        if error is not None:
            summary = f"{type(error).__name__}: {error}".splitlines()[0] if str(error) else type(error).__name__
            self._row(agent, event, AgentAction.AGENT_ERROR, "", "agent error", summary)
            return
        if event.acted and event.decided_by == agent:
            self._row(agent, event, action_of(event), str(event.response or ""), event.reason, "")
            return
        for v in verdicts:
            self._row(agent, event, AgentAction.ACCEPT_MESSAGE, v.response, v.action, v.reason)

    def _row(self, agent: str, event: Event, action: AgentAction, response: str, reason: str, data: str) -> None:
        item = getattr(event, "mail_item", None)
        session = event.session if isinstance(event, ReceiveEvent) else (item.session if item is not None else None)
        if item is not None:
            sender, recipients = item.sender, [r.address for r in item.recipients]
            p2 = item.header("From") or ""
            entered = item.stamps.get(Stamp.ORIGINAL_CLIENT_IP, "") or (session.client_ip if session else "")
        else:
            sender = getattr(event, "sender", "")
            rcpt = getattr(event, "recipient", None)
            recipients, p2, entered = [rcpt.address] if rcpt is not None else [], "", ""
        local = f"{session.server_ip}:{session.server_port}" if session and session.server_ip else ""
        remote = f"{session.client_ip}:{session.client_port}" if session and session.client_ip else ""
        self.file.write((
            self.file.now(), session.session_id if session else "", local, remote, entered,
            item.message_id if item is not None else "", sender, p2.strip(), ";".join(recipients), str(len(recipients)),
            agent, event.exchange_name, action, response, reason, data))

    def close(self) -> None:
        self.file.close()


def agent_log(config: "TransportConfig", clock: Clock = real_time) -> AgentLog | None:
    """The configuration's agent log, `<data root>/logs/AgentLog/` (None when AgentLogEnabled is off)."""
    s = config.agent_log
    if not s.enabled:
        return None
    return AgentLog(config.data_root / "logs" / "AgentLog", s.max_age_days, s.max_file_size, s.max_directory_size,
                    clock)
