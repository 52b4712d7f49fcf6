"""SMTP send protocol logging: the client the send connectors use when theirs logs (ProtocolLoggingLevel Verbose).

Each session writes its connect (`+`), every command the hub sends (`>`; AUTH credentials as `****`), every reply
line it receives (`<`), the message data only as its size (`*`), and the disconnect (`-`) to
`logs/ProtocolLog/SmtpSend/SENDyyyymmdd-N.log`, the same format as the receive side (`transport.core.protocol_log`).
The hooks sit around aiosmtplib's own command and data calls, so a connector that does not log uses the plain client.
"""

from __future__ import annotations

import itertools
from typing import Any

import aiosmtplib

from ..core.protocol_log import ProtocolEvent, ProtocolLog, ProtocolSession, masked

__all__ = ["LoggedSMTP"]

_sessions = itertools.count(1)


class LoggedSMTP(aiosmtplib.SMTP):
    """aiosmtplib's client, writing the send protocol log of its connector."""

    def __init__(self, log: ProtocolLog, connector: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._protocol_log, self._connector = log, connector
        self._session: ProtocolSession | None = None
        self._secret = False  # the next command answers an AUTH challenge

    async def connect(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        response = await super().connect(*args, **kwargs)
        local = "%s:%s" % (self.transport.get_extra_info("sockname") or ("", ""))[:2] if self.transport else ""
        self._session = self._protocol_log.session(self._connector, f"{next(_sessions):016X}", local,
                                                   f"{self.hostname}:{self.port}")
        self._session.write(ProtocolEvent.CONNECT)
        self._replied(response)
        return response

    async def execute_command(self, *args: bytes, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        if self._session is not None:
            words = b" ".join(args).decode("utf-8", "replace")
            self._session.write(ProtocolEvent.SEND, masked(words, self._secret))
            self._secret = words.upper().startswith("AUTH ")
        response = await super().execute_command(*args, **kwargs)
        self._secret = self._secret and response.code == 334
        self._replied(response)
        return response

    async def data(self, message: str | bytes, /, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        if self._session is not None:
            self._session.write(ProtocolEvent.SEND, "DATA")
            self._session.write(ProtocolEvent.INFORMATION, f"{len(message)} bytes of message data")
        response = await super().data(message, **kwargs)
        self._replied(response)
        return response

    async def starttls(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        response = await super().starttls(*args, **kwargs)
        if self._session is not None:
            self._session.write(ProtocolEvent.INFORMATION, "TLS negotiation succeeded")
        return response

    def close(self) -> None:
        if self._session is not None:
            self._session.write(ProtocolEvent.DISCONNECT)
            self._session = None
        super().close()

    def _replied(self, response: aiosmtplib.SMTPResponse) -> None:
        if self._session is not None:
            for line in response.message.splitlines() or [""]:
                self._session.write(ProtocolEvent.RECEIVE, f"{response.code} {line}".rstrip())
