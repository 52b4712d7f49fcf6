"""Exchange's common anti-spam gating, answered once for every built-in agent (reference §2).

Whether an agent runs on a session's receive connector at all is the pipeline's business (a connector's
`agents:` list scopes every receive agent, custom ones too). On the connectors it runs on, an anti-spam agent
acts iff ``(ExternalMailEnabled and the session is not the organisation's) or (InternalMailEnabled and it is)``; the
organisation's sessions are those holding ms-Exch-Bypass-Anti-Spam (authenticated ExchangeUsers, or a connector
granting ExchangeServers). An IP Allow list hit (the connection filter sets ``session.on_allow_list``) skips the
agents that honour it, as Exchange's Sender ID and content filter do; Exchange's sender and recipient filters do
not look at it, so they say so with ``honours_allow_list = False``. Per-agent ``bypassed_recipients`` are answered
here too, so every agent reads one list the same way, and so is acting on some recipients only
(`act_per_recipient`): the one way a reject or delete spares bypassed recipients.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import ClassVar

from pydantic import Field, field_validator

from .agent import AgentConfig, SmtpReceiveAgent
from .events import MessageEvent, SmtpResponse
from .mailitem import Recipient, RecipientStatus, SessionInfo

__all__ = ["AntispamAgent", "AntispamConfig", "Bypass", "RecipientBypassConfig"]


class Bypass(str, enum.Enum):
    """Why an agent left a session alone; the values are Exchange's Antispam-Report words where it has one."""

    BYPASS_RIGHT = "MessageSecurityAntispamBypass"
    EXTERNAL_MAIL_DISABLED = "ExternalMailDisabled"
    IP_ON_ALLOW_LIST = "IPOnAllowList"


class AntispamConfig(AgentConfig):
    """The settings every anti-spam agent shares (Set-*Config -ExternalMailEnabled/-InternalMailEnabled)."""

    external_mail_enabled: bool = Field(True, description="ExternalMailEnabled: check mail from anonymous and partner sessions.")
    internal_mail_enabled: bool = Field(
        False, description="InternalMailEnabled: check mail from the organisation's sessions too (authenticated users, ExchangeServers).")


class RecipientBypassConfig(AntispamConfig):
    """For the agents Exchange gives a BypassedRecipients list (connection filter, Sender ID)."""

    bypassed_recipients: list[str] = Field(
        default_factory=list, max_length=100, description="BypassedRecipients: recipients whose mail this agent never judges.")

    @field_validator("bypassed_recipients")
    @classmethod
    def _lower(cls, values: list[str]) -> list[str]:
        return [v.strip().lower() for v in values]


class AntispamAgent(SmtpReceiveAgent):
    """Base of the built-in anti-spam agents: `bypass(session)` and `bypassed(recipients)` are the one gate."""

    Config: ClassVar[type[AgentConfig]] = AntispamConfig
    honours_allow_list: ClassVar[bool] = True

    def bypass(self, session: SessionInfo) -> Bypass | None:
        """Why this agent must leave the session alone, or None when it runs."""
        cfg: AntispamConfig = self.config  # type: ignore[assignment]
        if session.antispam_bypass or session.authenticated:
            if not cfg.internal_mail_enabled:
                return Bypass.BYPASS_RIGHT
        elif not cfg.external_mail_enabled:
            return Bypass.EXTERNAL_MAIL_DISABLED
        if self.honours_allow_list and session.on_allow_list:
            return Bypass.IP_ON_ALLOW_LIST
        return None

    def bypassed(self, recipients: Iterable[Recipient]) -> set[str]:
        """The addresses among `recipients` on this agent's bypassed_recipients list (lower-cased)."""
        listed = getattr(self.config, "bypassed_recipients", ())
        return {r.address.lower() for r in recipients} & set(listed) if listed else set()

    @staticmethod
    def act_per_recipient(event: MessageEvent, reason: str, response: SmtpResponse,
                          rejected: Iterable[str] = (), deleted: Iterable[str] = ()) -> None:
        """Reject some recipients (with `response`) and silently delete others, as Exchange's agents do.

        Every recipient rejected: the message is rejected with `response`; every one deleted: it is deleted (the
        client gets the fake 250). Otherwise the client gets 250, the rejected recipients fail with `response`
        (a FAIL row and, once outbound mail exists, an NDR), the deleted ones are dropped, and the others (bypassed
        recipients, mailboxes with higher thresholds) still get the message.
        """
        item = event.mail_item
        rejected, deleted = {a.lower() for a in rejected}, {a.lower() for a in deleted}
        everyone = {r.address.lower() for r in item.recipients}
        if everyone and everyone <= rejected:
            event.reject_message(response, reason)
            return
        if everyone and everyone <= deleted:
            event.delete_message(reason)
            return
        for r in item.recipients:
            if r.address.lower() in rejected:
                r.status, r.response = RecipientStatus.FAILED, str(response)
        item.recipients = [r for r in item.recipients if r.address.lower() not in deleted]
        parts = [f"{len(s & everyone)} recipient(s) {what}" for s, what in ((rejected, "rejected"), (deleted, "deleted")) if s & everyone]
        event.stamp(f"{reason}; {', '.join(parts)}, {len(everyone - rejected - deleted)} kept")
