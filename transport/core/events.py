"""SMTP replies and the event objects handed to agent hooks.

Each event offers exactly what Exchange allows at that point: a command event can reject the command, a
message event (end of headers, end of data) can reject, silently delete or quarantine the message, a routing
event can defer or delete it, and every receive event can disconnect. A hook that returns without acting lets
the pipeline go on; the first hook that acts ends the event.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from .mailitem import MailItem, Recipient, SessionInfo, Verdict

__all__ = [
    "SmtpResponse", "Replies", "Action", "Event", "ReceiveEvent", "ConnectEvent", "CommandEvent", "HeloEvent", "EhloEvent",
    "StartTlsEvent", "AuthEvent", "MailFromEvent", "RcptToEvent", "DataEvent", "RsetEvent", "MessageEvent",
    "EndOfHeadersEvent", "EndOfDataEvent", "RejectEvent", "DisconnectEvent", "RoutingEvent", "SubmittedEvent",
    "ResolvedEvent", "RoutedEvent", "CategorizedEvent", "EVENTS",
]


@dataclass(frozen=True, slots=True)
class SmtpResponse:
    """An SMTP reply: code, enhanced status code (RFC 3463) and text."""

    code: int
    enhanced: str = ""
    text: str = ""

    def __str__(self) -> str:
        return " ".join(p for p in (str(self.code), self.enhanced, self.text) if p)

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @classmethod
    def parse(cls, line: str) -> "SmtpResponse":
        code, _, rest = line.strip().partition(" ")
        first, _, text = rest.partition(" ")
        if first.count(".") == 2 and first[:1] in "245":
            return cls(int(code), first, text)
        return cls(int(code), "", rest)


class Replies:
    """Exchange's stock replies (see shared/reference/exchange-transport.md §11)."""

    OK_SENDER = SmtpResponse(250, "2.1.0", "Sender OK")
    OK_RECIPIENT = SmtpResponse(250, "2.1.5", "Recipient OK")
    START_DATA = SmtpResponse(354, "", "Start mail input; end with <CRLF>.<CRLF>")
    CLOSING = SmtpResponse(221, "2.0.0", "Service closing transmission channel")
    RELAY_DENIED = SmtpResponse(550, "5.7.1", "Unable to relay")
    TOO_MANY_RECIPIENTS = SmtpResponse(452, "4.5.3", "Too many recipients")
    SIZE_EXCEEDED = SmtpResponse(552, "5.3.4", "Message size exceeds fixed maximum message size")
    HEADER_SIZE_EXCEEDED = SmtpResponse(552, "5.3.4", "Header size exceeds fixed maximum size")
    RESOURCES = SmtpResponse(452, "4.3.1", "Insufficient system resources")
    AGENT_ERROR = SmtpResponse(451, "4.3.2", "System not accepting network messages")
    QUEUE_UNAVAILABLE = SmtpResponse(451, "4.3.1", "Insufficient system resources (queue database unavailable)")
    NOT_HANDED_OVER = SmtpResponse(451, "4.3.0", "Temporary server error (the message could not reach the queue)")
    SHUTTING_DOWN = SmtpResponse(421, "4.3.2", "Service not available, closing transmission channel")
    TOO_MANY_ERRORS = SmtpResponse(421, "4.7.0", "Too many errors on this connection, closing transmission channel")
    AUTH_FAILED = SmtpResponse(535, "5.7.3", "Authentication unsuccessful")
    AUTH_OK = SmtpResponse(235, "2.7.0", "Authentication successful")
    IDLE_TIMEOUT = SmtpResponse(451, "4.7.0", "Timeout waiting for client input")
    CONNECTION_TIMEOUT = SmtpResponse(421, "4.4.1", "Connection timed out")
    SEND_HELLO_FIRST = SmtpResponse(503, "5.5.2", "Send hello first")
    NEED_MAIL = SmtpResponse(503, "5.5.2", "Need mail command")
    NEED_RCPT = SmtpResponse(503, "5.5.2", "Need rcpt command")
    SENDER_ALREADY = SmtpResponse(503, "5.5.2", "Sender already specified")
    UNRECOGNIZED = SmtpResponse(500, "5.3.3", "Unrecognized command")
    SYNTAX_MAIL = SmtpResponse(501, "5.5.4", "Invalid arguments")
    BAD_ADDRESS = SmtpResponse(501, "5.1.3", "Invalid address")
    HOP_COUNT = SmtpResponse(554, "5.4.6", "Hop count exceeded - possible mail loop")
    RECIPIENT_NOT_FOUND = SmtpResponse(550, "5.1.1", "RESOLVER.ADR.ExRecipNotFound; not found")
    STARTTLS_FIRST = SmtpResponse(530, "5.7.0", "Must issue a STARTTLS command first")
    NOT_AUTHENTICATED = SmtpResponse(530, "5.7.1", "Client was not authenticated")
    XCLIENT_DENIED = SmtpResponse(550, "5.7.0", "Error: insufficient authorization")

    @staticmethod
    def queued(message_id: str, internal_id: int | None = None, host: str = "") -> SmtpResponse:
        """The reply to end of DATA; without an internal id it is the silent-delete form Exchange's agents send."""
        if internal_id is None:
            return SmtpResponse(250, "2.6.0", f"{message_id} Queued mail for delivery")
        return SmtpResponse(250, "2.6.0", f"{message_id} [InternalId={internal_id}, Hostname={host}] Queued mail for delivery")


class Action(str, enum.Enum):
    """What a hook did; NONE lets the pipeline go on."""

    NONE = "None"
    REJECT = "Reject"
    DISCONNECT = "Disconnect"
    DELETE = "Delete"
    QUARANTINE = "Quarantine"
    DEFER = "Defer"


class Event:
    """Base of all events: the acting agent's name is filled in by the pipeline before each hook."""

    name: ClassVar[str] = ""
    exchange_name: ClassVar[str] = ""

    def __init__(self) -> None:
        self.action = Action.NONE
        self.response: SmtpResponse | None = None
        self.reason = ""
        self.agent = ""
        self.decided_by = ""

    @property
    def acted(self) -> bool:
        return self.action is not Action.NONE

    def _act(self, action: Action, response: SmtpResponse | None, reason: str) -> None:
        self.action, self.response, self.reason, self.decided_by = action, response, reason, self.agent


class ReceiveEvent(Event):
    def __init__(self, session: SessionInfo) -> None:
        super().__init__()
        self.session = session

    def disconnect(self, reason: str = "") -> None:
        """Drop the connection without a reply (Exchange's Disconnect())."""
        self._act(Action.DISCONNECT, None, reason)


class ConnectEvent(ReceiveEvent):
    name, exchange_name = "on_connect", "OnConnectEvent"

    def reject_connection(self, response: SmtpResponse, reason: str = "") -> None:
        """Answer the connection with this reply instead of the banner, then close it."""
        self._act(Action.REJECT, response, reason)


class CommandEvent(ReceiveEvent):
    def reject_command(self, response: SmtpResponse, reason: str = "") -> None:
        """Refuse this command with the reply given; the session goes on."""
        self._act(Action.REJECT, response, reason)


class HeloEvent(CommandEvent):
    name, exchange_name = "on_helo", "OnHeloCommand"

    def __init__(self, session: SessionInfo, domain: str) -> None:
        super().__init__(session)
        self.domain = domain


class EhloEvent(HeloEvent):
    name, exchange_name = "on_ehlo", "OnEhloCommand"


class StartTlsEvent(CommandEvent):
    name, exchange_name = "on_starttls", "OnStartTlsCommand"


class AuthEvent(CommandEvent):
    name, exchange_name = "on_auth", "OnAuthCommand"

    def __init__(self, session: SessionInfo, mechanism: str, user: str = "") -> None:
        super().__init__(session)
        self.mechanism, self.user = mechanism, user


class MailFromEvent(CommandEvent):
    name, exchange_name = "on_mail_from", "OnMailCommand"

    def __init__(self, session: SessionInfo, sender: str, params: dict[str, str]) -> None:
        super().__init__(session)
        self.sender, self.params = sender, params


class RcptToEvent(CommandEvent):
    name, exchange_name = "on_rcpt_to", "OnRcptCommand"

    def __init__(self, session: SessionInfo, sender: str, recipient: Recipient, recipients: list[Recipient]) -> None:
        super().__init__(session)
        self.sender, self.recipient, self.recipients = sender, recipient, recipients


class DataEvent(CommandEvent):
    name, exchange_name = "on_data", "OnDataCommand"

    def __init__(self, session: SessionInfo, sender: str, recipients: list[Recipient]) -> None:
        super().__init__(session)
        self.sender, self.recipients = sender, recipients


class RsetEvent(ReceiveEvent):
    name, exchange_name = "on_rset", "OnRsetCommand"


class MessageEvent(ReceiveEvent):
    """End of headers / end of data: the whole mail item is here to read, stamp and edit."""

    def __init__(self, session: SessionInfo, mail_item: MailItem) -> None:
        super().__init__(session)
        self.mail_item = mail_item

    def _act(self, action: Action, response: SmtpResponse | None, reason: str) -> None:
        super()._act(action, response, reason)
        self.mail_item.record(Verdict(self.agent, self.name, action.value, reason, str(response or "")))

    def reject_message(self, response: SmtpResponse, reason: str = "") -> None:
        """Refuse the message: the reply goes to the client as the answer to end of DATA."""
        self._act(Action.REJECT, response, reason)

    def delete_message(self, reason: str = "") -> None:
        """Silently delete: the client is told the message was queued, and nothing is delivered."""
        self._act(Action.DELETE, None, reason)

    def quarantine(self, reason: str = "", recipients: Iterable[str] | None = None) -> None:
        """Accept, but deliver these recipients' copies (all of them by default) to the organisation's quarantine
        mailbox instead, with the original envelope recorded (Exchange's Quarantine(recipients, reason)); with
        no quarantine mailbox configured they are delivered as usual."""
        addresses = [r.address for r in self.mail_item.recipients] if recipients is None else list(recipients)
        self.mail_item.quarantine(addresses, f"{self.agent}: {reason}" if self.agent else reason)
        self._act(Action.QUARANTINE, None, reason)

    def stamp(self, reason: str) -> None:
        """Record a verdict that lets the message go on (it shows in tracking and `transport trace`)."""
        self.mail_item.record(Verdict(self.agent, self.name, "Stamp", reason))


class EndOfHeadersEvent(MessageEvent):
    name, exchange_name = "on_end_of_headers", "OnEndOfHeaders"


class EndOfDataEvent(MessageEvent):
    name, exchange_name = "on_end_of_data", "OnEndOfData"


class RejectEvent(ReceiveEvent):
    """Fired after any 4xx/5xx reply, whoever gave it."""

    name, exchange_name = "on_reject", "OnReject"

    def __init__(self, session: SessionInfo, response: SmtpResponse, command: str) -> None:
        super().__init__(session)
        self.rejection, self.command = response, command


class DisconnectEvent(ReceiveEvent):
    name, exchange_name = "on_disconnect", "OnDisconnectEvent"


class RoutingEvent(Event):
    """Categorizer events: the queued mail item, with Defer() and Delete() as Exchange's sources offer."""

    def __init__(self, mail_item: MailItem) -> None:
        super().__init__()
        self.mail_item = mail_item
        self.defer_seconds = 0.0

    def _act(self, action: Action, response: SmtpResponse | None, reason: str) -> None:
        super()._act(action, response, reason)
        self.mail_item.record(Verdict(self.agent, self.name, action.value, reason, str(response or "")))

    def defer(self, seconds: float, response: SmtpResponse | None = None, reason: str = "") -> None:
        """Put the message back and try categorizing it again after `seconds`."""
        self.defer_seconds = seconds
        self._act(Action.DEFER, response, reason)

    def delete(self, reason: str = "") -> None:
        """Drop the message with no DSN."""
        self._act(Action.DELETE, None, reason)


class SubmittedEvent(RoutingEvent):
    name, exchange_name = "on_submitted", "OnSubmittedMessage"


class ResolvedEvent(RoutingEvent):
    name, exchange_name = "on_resolved", "OnResolvedMessage"

    def set_routing_override(self, recipient: Recipient, next_hop: str) -> None:
        """Send this recipient to another next hop: `mailbox`, `Unreachable` or another delivery queue's (a next hop
        that no delivery queue serves waits in Unreachable)."""
        recipient.next_hop = next_hop


class RoutedEvent(RoutingEvent):
    name, exchange_name = "on_routed", "OnRoutedMessage"


class CategorizedEvent(RoutingEvent):
    name, exchange_name = "on_categorized", "OnCategorizedMessage"


RECEIVE_EVENTS: tuple[type[ReceiveEvent], ...] = (
    ConnectEvent, HeloEvent, EhloEvent, StartTlsEvent, AuthEvent, MailFromEvent, RcptToEvent, DataEvent,
    EndOfHeadersEvent, EndOfDataEvent, RsetEvent, RejectEvent, DisconnectEvent,
)
ROUTING_EVENTS: tuple[type[RoutingEvent], ...] = (SubmittedEvent, ResolvedEvent, RoutedEvent, CategorizedEvent)
EVENTS: dict[str, type[Event]] = {e.name: e for e in RECEIVE_EVENTS + ROUTING_EVENTS}
