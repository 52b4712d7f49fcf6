"""What a receive connector lets a session do before any agent is asked: submit at all, and relay.

Exchange grants these through the connector's permission groups (Ms-Exch-SMTP-Submit, Ms-Exch-SMTP-Accept-Any-
Recipient) and RequireTLS. SMTP receive asks at MAIL FROM and RCPT TO; `transport trace` asks the same questions
of its simulated session.
"""

from __future__ import annotations

from .core.config import PermissionGroup, ReceiveConnector, TransportConfig
from .core.events import Replies, SmtpResponse
from .core.mailitem import Recipient, SessionInfo

__all__ = ["relay_refusal", "submit_refusal"]


def submit_refusal(connector: ReceiveConnector, session: SessionInfo) -> SmtpResponse | None:
    """The connector's RequireTLS and PermissionGroups at MAIL FROM: the reply refusing it, or None."""
    if connector.require_tls and not session.tls:
        return Replies.STARTTLS_FIRST
    if not (session.authenticated or session.antispam_bypass or connector.grants(PermissionGroup.ANONYMOUS_USERS)
            or connector.grants(PermissionGroup.PARTNERS)):
        return Replies.NOT_AUTHENTICATED
    return None


def relay_refusal(config: TransportConfig, session: SessionInfo, recipient: Recipient) -> SmtpResponse | None:
    """`550 5.7.1 Unable to relay` for a recipient outside the accepted domains, unless the session may relay."""
    if not (session.authenticated or session.antispam_bypass) and config.accepted_domain(recipient.domain) is None:
        return Replies.RELAY_DENIED
    return None
