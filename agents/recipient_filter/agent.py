"""The Recipient Filter agent (Set-RecipientFilterConfig): blocked recipients and recipient validation at RCPT.

With RecipientValidationEnabled, a recipient in an Authoritative accepted domain that is not in the mailbox
directory is refused at RCPT with `550 5.1.1 User unknown` instead of being accepted and failed later by the
categorizer; with BlockListEnabled, so is a recipient on BlockedRecipients. Relay domains are never looked up. The
receive connector holds 5.1.1 replies back by its TarpitInterval (see `transport.receive`), which slows down
directory harvesting. Exchange's recipient filter does not look at the IP Allow list, so neither does this one.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from agents import AntispamAgent, AntispamConfig, RcptToEvent, SmtpResponse
from transport.core.config import DomainType

__all__ = ["RecipientFilterAgent", "RecipientFilterConfig", "COUNTERS", "USER_UNKNOWN"]

COUNTERS = "MSExchange Recipient Filter Agent"
USER_UNKNOWN = SmtpResponse(550, "5.1.1", "User unknown")


class RecipientFilterConfig(AntispamConfig):
    """Set-RecipientFilterConfig."""

    blocked_recipients: list[str] = Field(default_factory=list, max_length=800, description="BlockedRecipients: addresses refused at RCPT.")
    block_list_enabled: bool = Field(False, description="BlockListEnabled: refuse the BlockedRecipients.")
    recipient_validation_enabled: bool = Field(
        False, description="RecipientValidationEnabled: refuse recipients of Authoritative domains that are not in the mailbox directory.")

    @field_validator("blocked_recipients")
    @classmethod
    def _lower(cls, values: list[str]) -> list[str]:
        return [v.strip().lower() for v in values]


class RecipientFilterAgent(AntispamAgent):
    name = "Recipient Filter Agent"
    description = "Refuses blocked and unknown recipients at RCPT TO (550 5.1.1 User unknown)."
    Config = RecipientFilterConfig
    honours_allow_list = False

    async def on_rcpt_to(self, event: RcptToEvent) -> None:
        cfg: RecipientFilterConfig = self.config
        if self.bypass(event.session) is not None:
            return
        address = event.recipient.address.lower()
        if cfg.block_list_enabled and address in cfg.blocked_recipients:
            counter, reason = "Recipients Rejected by Block List", f"{address} is a blocked recipient"
        elif cfg.recipient_validation_enabled and self._unknown(address):
            counter, reason = "Recipients Rejected by Recipient Validation", f"{address} is not in the directory"
        else:
            return
        self.context.counters.increment(COUNTERS, counter)
        event.reject_command(USER_UNKNOWN, reason)

    def _unknown(self, address: str) -> bool:
        config = self.context.config
        domain = config.accepted_domain(address.rpartition("@")[2])
        return domain is not None and domain.domain_type is DomainType.AUTHORITATIVE and config.mailbox(address) is None
