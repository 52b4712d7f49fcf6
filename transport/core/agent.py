"""Base classes for transport agents (what `agents/` re-exports for custom agents).

An agent is a class with a `name`, an optional pydantic `Config` model validated from YAML, and `async`
hook methods named after the events it handles (`on_rcpt_to`, `on_end_of_headers`, `on_submitted`, …).
The pipeline finds hooks by name once, at load time, so an agent pays nothing for events it ignores.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from typing import TYPE_CHECKING, Any, Awaitable, Callable, ClassVar, Iterable

from pydantic import BaseModel, ConfigDict

from .events import RECEIVE_EVENTS, ROUTING_EVENTS
from .mailitem import MailItem, Recipient

if TYPE_CHECKING:
    from .config import TransportConfig
    from .counters import Counters
    from .dns import DnsResolver

__all__ = ["AgentConfig", "AgentContext", "Agent", "SmtpReceiveAgent", "RoutingAgent", "HANDLING"]

HANDLING: ContextVar["MailItem | None"] = ContextVar("HANDLING", default=None)
"""The message whose event an agent's hook is handling (set by the pipeline): what `Agent.submit` names as the
cause of a message it submits, so a chain of agent-made messages is counted without the agent's help."""


class AgentConfig(BaseModel):
    """Base for an agent's settings; unknown keys are errors so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class AgentContext:
    """What the hub lends an agent: its facts and services, never its internals."""

    config: "TransportConfig"
    dns: "DnsResolver"
    counters: "Counters"
    log: logging.Logger
    submit: Callable[["MailItem", str, "MailItem | None"], Awaitable[int | None]] | None = None
    """The submission path's agent door (`Submission.submit_from_agent`); agents call `Agent.submit`."""
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def server_fqdn(self) -> str:
        return self.config.receive.fqdn


class Agent:
    """Common part of every agent. Subclasses set `name` and define hooks; `Config` is optional."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type[AgentConfig]] = AgentConfig
    event_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: AgentConfig, context: AgentContext) -> None:
        self.config = config
        self.context = context
        self.pipeline_name = self.name or type(self).__name__  # the configured name, set by the pipeline
        self.log = context.log.getChild(self.pipeline_name)

    async def submit(self, message: bytes | EmailMessage, sender: str, recipients: Iterable[str],
                     cause: "MailItem | None" = None) -> int | None:
        """Submit a new message (a journal report, an auto-reply) into the Submission queue, durably, with
        source AGENT: returns its internal id once committed.

        `message` is the raw RFC 5322 bytes or an `email.message.EmailMessage`; `sender` the envelope sender
        ("" for a null one, as reports use); `cause` the message it answers, by default the one whose event is
        running. The new message is never handed back to this agent, and a chain of agent-made messages longer
        than agent_submission.max_hop_count is refused (None is returned): agents cannot loop.
        """
        if self.context.submit is None:
            raise RuntimeError("agent submission is available once the hub runs the agent")
        if not isinstance(message, (bytes, bytearray, EmailMessage)):
            raise TypeError(f"submit takes the message as bytes or an EmailMessage, not {type(message).__name__}")
        raw = message.as_bytes(policy=SMTP) if isinstance(message, EmailMessage) else bytes(message)
        item = MailItem(sender=sender, recipients=[Recipient(r) for r in recipients], raw=raw)
        if not item.recipients:
            raise ValueError("an agent-submitted message needs at least one recipient")
        return await self.context.submit(item, self.pipeline_name, cause if cause is not None else HANDLING.get())

    async def start(self) -> None:
        """Called once when the hub starts (open resources here)."""

    async def stop(self) -> None:
        """Called once when the hub stops."""

    @classmethod
    def hooks(cls) -> list[str]:
        """The event names this agent handles: the hook methods it defines."""
        return [n for n in cls.event_names if callable(getattr(cls, n, None))]


class SmtpReceiveAgent(Agent):
    """Runs on SMTP receive events: on_connect … on_end_of_data, on_rset, on_reject, on_disconnect."""

    event_names = tuple(e.name for e in RECEIVE_EVENTS)


class RoutingAgent(Agent):
    """Runs on categorizer events: on_submitted, on_resolved, on_routed, on_categorized."""

    event_names = tuple(e.name for e in ROUTING_EVENTS)
