"""Base classes for transport agents (what `agents/` re-exports for custom agents).

An agent is a class with a `name`, an optional pydantic `Config` model validated from YAML, and `async`
hook methods named after the events it handles (`on_rcpt_to`, `on_end_of_headers`, `on_submitted`, …).
The pipeline finds hooks by name once, at load time, so an agent pays nothing for events it ignores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, ClassVar

from pydantic import BaseModel, ConfigDict

from .events import RECEIVE_EVENTS, ROUTING_EVENTS

if TYPE_CHECKING:
    from .config import TransportConfig
    from .counters import Counters
    from .dns import DnsResolver
    from .mailitem import MailItem

__all__ = ["AgentConfig", "AgentContext", "Agent", "SmtpReceiveAgent", "RoutingAgent"]


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
    submit: Callable[["MailItem"], Awaitable[int]] | None = None
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
        self.log = context.log.getChild(self.name or type(self).__name__)

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
