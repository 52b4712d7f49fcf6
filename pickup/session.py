"""The SMTP session a dropped file stands for: its facts, read from the file, and its receive events.

Exchange runs no receive agents on the Pickup and Replay directories. Here, unless a directory's
`run_receive_agents` is off, a file is played to the agents as the SMTP conversation that would have carried
it (connect, EHLO, MAIL FROM, one RCPT TO per recipient, DATA; then the message events), so an administrator can
drop a captured message and see what the anti-spam chain does with it. The peer is the sending host of the
newest Received line not written by one of our own servers, found the way Exchange finds the originating IP
(newest to oldest, skipping InternalSMTPServers and Pickup lines; loopback hops are skipped too), unless the
file names it in X-SourceIPAddress / X-HeloDomain.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Callable, Iterable

from transport.core import events as ev
from transport.core.events import Action, SmtpResponse
from transport.core.mailitem import MailItem, Recipient, RecipientStatus, SessionInfo
from transport.core.pipeline import Pipeline

__all__ = ["originating_hop", "simulated_session", "SimulatedSession"]

LOCALHOST = "127.0.0.1"
_FROM = re.compile(r"\s*from\s+(\S+)(.*?)(?:\sby\s|;|$)", re.IGNORECASE | re.DOTALL)
_ADDRESS = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]")
_HELO = re.compile(r"\bhelo=([^\s)]+)", re.IGNORECASE)


def originating_hop(received: Iterable[str], is_internal: Callable[[str], bool]) -> tuple[str, str] | None:
    """(client IP, HELO name) from the newest Received value whose sending host is outside the organisation."""
    for value in received:
        m = _FROM.match(value)
        if m is None:
            continue
        helo, comment = m.group(1), m.group(2)
        found = _ADDRESS.search(comment) or _ADDRESS.fullmatch(helo)
        if found is None:
            continue
        try:
            ip = ipaddress.ip_address(found.group(1))
        except ValueError:
            continue
        if ip.is_loopback or is_internal(str(ip)):
            continue
        named = _HELO.search(comment)
        return str(ip), named.group(1) if named else helo
    return None


def simulated_session(item: MailItem, name: str, is_internal: Callable[[str], bool], helo: str = "",
                      client_ip: str = "") -> SessionInfo:
    """The session facts for a file, read before its Received lines are stripped.

    Facts the file states (X-HeloDomain, X-SourceIPAddress) win; then the originating Received hop; then a
    local submission (127.0.0.1, localhost). The session id is the file's name, so the tracking log's
    source-context says which file a message came from.
    """
    if not (helo and client_ip):
        hop = originating_hop(item.header_values("Received"), is_internal)
        if hop is not None:
            client_ip, helo = client_ip or hop[0], helo or hop[1]
    client_ip = client_ip or LOCALHOST
    return SessionInfo(session_id=name, client_ip=client_ip, helo=helo or "localhost", esmtp=True,
                       internal=is_internal(client_ip))


class SimulatedSession:
    """Plays a mail item's envelope to the receive agents as the commands of one SMTP session."""

    def __init__(self, pipeline: Pipeline, item: MailItem,
                 refuse_recipient: Callable[[Recipient], SmtpResponse | None] | None = None) -> None:
        self.pipeline = pipeline
        self.item = item
        self.refuse_recipient = refuse_recipient  # a check before the RCPT event (`transport trace`: relaying)

    async def commands(self) -> str | None:
        """Connect, EHLO (unless the session has no HELO name), MAIL FROM, RCPT TO, DATA; the reason the file
        cannot be submitted, or None.

        A recipient an agent refuses is marked failed with the agent's reply (the NDR comes with the DSN
        work); the file fails when no recipient is left.
        """
        item, session = self.item, self.item.session
        refused = (await self._run(ev.ConnectEvent(session), "connect")
                   or (session.helo and await self._run(ev.EhloEvent(session, session.helo), "EHLO"))
                   or await self._run(ev.MailFromEvent(session, item.sender, item.mail_params), "MAIL FROM"))
        if refused:
            return refused
        accepted: list[Recipient] = []
        for recipient in item.pending():
            denied = self.refuse_recipient(recipient) if self.refuse_recipient is not None else None
            if denied is not None:
                recipient.status, recipient.response = RecipientStatus.FAILED, str(denied)
                continue
            event = ev.RcptToEvent(session, item.sender, recipient, accepted)
            refused = await self._run(event, "RCPT TO")
            if refused is None:
                accepted.append(recipient)
            elif event.action is Action.DISCONNECT:
                return refused
            else:
                recipient.status, recipient.response = RecipientStatus.FAILED, str(event.response)
        if not accepted:
            return "every recipient was refused at RCPT TO"
        return await self._run(ev.DataEvent(session, item.sender, accepted), "DATA")

    async def _run(self, event: ev.ReceiveEvent, command: str) -> str | None:
        if not self.pipeline.has(event.name):
            return None
        await self.pipeline.run(event)
        if event.action is Action.DISCONNECT:
            return f"{event.decided_by} dropped the session at {command}: {event.reason or 'disconnect'}"
        if event.action is Action.REJECT and event.response is not None:
            await self.rejected(event.response, command)
            return f"{event.decided_by} refused {command}: {event.response}"
        return None

    async def rejected(self, response: SmtpResponse, command: str) -> None:
        """OnReject, as after any 4xx/5xx reply in an SMTP session."""
        if self.pipeline.has("on_reject"):
            await self.pipeline.run(ev.RejectEvent(self.item.session, response, command))

    async def close(self) -> None:
        """OnDisconnect: the simulated session is over."""
        if self.pipeline.has("on_disconnect"):
            await self.pipeline.run(ev.DisconnectEvent(self.item.session))
