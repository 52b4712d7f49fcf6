"""The agent API: everything a custom transport agent imports.

    from agents import SmtpReceiveAgent, RcptToEvent, SmtpResponse

    class BlockInterns(SmtpReceiveAgent):
        name = "Block Interns"

        async def on_rcpt_to(self, event: RcptToEvent) -> None:
            if event.recipient.address.startswith("intern"):
                event.reject_command(SmtpResponse(550, "5.7.1", "Interns receive no mail"))

Built-in agents live in sub-packages (`agents.senderid`, …) and are named in transport.yaml by dotted path.
"""

from transport.core.agent import Agent, AgentConfig, AgentContext, RoutingAgent, SmtpReceiveAgent
from transport.core.antispam import AntispamAgent, AntispamConfig, Bypass, RecipientBypassConfig
from transport.core.events import (
    AuthEvent, CategorizedEvent, ConnectEvent, DataEvent, DisconnectEvent, EhloEvent, EndOfDataEvent,
    EndOfHeadersEvent, HeloEvent, MailFromEvent, RcptToEvent, RejectEvent, Replies, ResolvedEvent, RoutedEvent,
    RsetEvent, SmtpResponse, StartTlsEvent, SubmittedEvent,
)
from transport.core.headers import ORGANIZATION_HEADER_PREFIX, addresses, fields_named
from transport.core.mailitem import (AuthAs, MailItem, Recipient, RecipientStatus, ReverseDns, SessionInfo, Source, Stamp,
                                     Verdict)

__all__ = [
    "Agent", "AgentConfig", "AgentContext", "RoutingAgent", "SmtpReceiveAgent", "AntispamAgent", "AntispamConfig", "Bypass", "RecipientBypassConfig",
    "AuthEvent", "CategorizedEvent", "ConnectEvent", "DataEvent", "DisconnectEvent", "EhloEvent", "EndOfDataEvent",
    "EndOfHeadersEvent", "HeloEvent", "MailFromEvent", "RcptToEvent", "RejectEvent", "Replies", "ResolvedEvent",
    "RoutedEvent", "RsetEvent", "SmtpResponse", "StartTlsEvent", "SubmittedEvent",
    "AuthAs", "MailItem", "Recipient", "RecipientStatus", "ReverseDns", "SessionInfo", "Source", "Stamp", "Verdict",
    "ORGANIZATION_HEADER_PREFIX", "addresses", "fields_named",
]
