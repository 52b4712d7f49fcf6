"""Exchange's receive limits that keep one client from hogging the hub: concurrent connections in all and per
source address, and the message submission rate per source.

`MaxInboundConnection` (5000) caps a connector's sessions; `MaxInboundConnectionPerSource` (20) and
`MaxInboundConnectionPercentagePerSource` (2 % of the former) cap one address, the lower of the two winning.
Beyond Exchange, the hub keeps file descriptors in reserve: the sessions of all connectors together never take
the last `DESCRIPTOR_RESERVE` of the process's open-file limit, so the queue database, the Maildir writers and
the tracking log always have one. Over a cap the client is told
`421 4.3.2 The maximum number of concurrent connections has exceeded a limit, closing transmission channel`.
`MessageRateLimit` (messages per minute per source, unlimited by default) answers
`421 4.4.2 Message submission rate for this client has exceeded the configured limit` at MAIL FROM.
"""

from __future__ import annotations

import resource
import time
from collections import Counter

from .core.config import ReceiveConnector
from .core.events import SmtpResponse

__all__ = ["ConnectionLimits", "raise_open_file_limit", "DESCRIPTOR_RESERVE", "TOO_MANY_CONNECTIONS", "RATE_EXCEEDED"]

DESCRIPTOR_RESERVE = 128
TOO_MANY_CONNECTIONS = SmtpResponse(
    421, "4.3.2", "The maximum number of concurrent connections has exceeded a limit, closing transmission channel")
RATE_EXCEEDED = SmtpResponse(421, "4.4.2", "Message submission rate for this client has exceeded the configured limit")


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one where the system allows; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


class ConnectionLimits:
    """One connector's session counts; `open_sessions` counts every connector's, against the descriptor budget."""

    open_sessions = 0  # process-wide: descriptors are the process's

    def __init__(self, settings: ReceiveConnector) -> None:
        self.settings = settings
        self.per_source: Counter[str] = Counter()
        self.sessions = 0
        share = settings.max_inbound_connection * settings.max_inbound_connection_percentage_per_source // 100
        self.per_source_cap = min(settings.max_inbound_connection_per_source, max(1, share))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.budget = soft - DESCRIPTOR_RESERVE if soft != resource.RLIM_INFINITY else 1 << 30
        self._sent: dict[str, list[float]] = {}

    def admit(self, ip: str) -> bool:
        """Count a new session from `ip`, or refuse it (False: answer TOO_MANY_CONNECTIONS and close)."""
        if (self.sessions >= self.settings.max_inbound_connection or self.per_source[ip] >= self.per_source_cap
                or ConnectionLimits.open_sessions >= self.budget):
            return False
        self.sessions += 1
        self.per_source[ip] += 1
        ConnectionLimits.open_sessions += 1
        return True

    def release(self, ip: str) -> None:
        self.sessions -= 1
        ConnectionLimits.open_sessions -= 1
        self.per_source[ip] -= 1
        if not self.per_source[ip]:
            del self.per_source[ip]

    def may_submit(self, ip: str) -> bool:
        """A MAIL FROM from `ip`: within MessageRateLimit over the last minute (0 = unlimited)?"""
        limit = self.settings.message_rate_limit
        if not limit:
            return True
        now = time.monotonic()
        recent = [t for t in self._sent.get(ip, ()) if now - t < 60]
        if len(recent) >= limit:
            self._sent[ip] = recent
            return False
        recent.append(now)
        self._sent[ip] = recent
        if len(self._sent) > 10_000:  # many sources: forget those quiet for a minute
            self._sent = {k: v for k, v in self._sent.items() if now - v[-1] < 60}
        return True
