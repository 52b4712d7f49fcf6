"""SMTP receive protocol logging: the session class the receive connectors use when one of them logs.

A connector with `protocol_logging_level: Verbose` writes each session's connect (`+`), every command line the
client sends (`<`; AUTH credentials as `****`; message data not at all, only its size as `*`), every reply the
hub sends (`>`, one row per line) and the disconnect (`-`, context `Local` when the hub closed, `Remote` when the
client did) to `transport.core.protocol_log`. The hooks sit around ReceiveProtocol's own methods, so receive
itself carries no logging code and sessions of connectors that do not log pay nothing but an attribute test.
"""

from __future__ import annotations

from typing import Any, Optional

from .core.protocol_log import ProtocolEvent, ProtocolSession, masked
from .receive import Connector, ReceiveProtocol

__all__ = ["LoggedReceiveProtocol"]


class LoggedReceiveProtocol(ReceiveProtocol):
    """ReceiveProtocol with the protocol log of its connector (if that connector has one)."""

    def __init__(self, connector: Connector, template: "ReceiveProtocol | None" = None) -> None:
        super().__init__(connector, template)
        self._log: ProtocolSession | None = None
        self._in_data = False
        self._data_bytes = 0
        self._masking = False
        self._pending = b""
        self._closed_here = False

    def _session_log(self) -> ProtocolSession | None:
        """This session's log, opened (with its `+` row) at the first row; None when its connector does not log."""
        if self._log is None:
            log = getattr(self.connector, "protocol_log", None)
            if log is None:
                return None
            info = self.info
            self._log = log.session(self.settings.name, info.session_id, f"{info.server_ip}:{info.server_port}",
                                    f"{info.client_ip}:{info.client_port}")
            self._log.write(ProtocolEvent.CONNECT)
        return self._log

    async def push(self, status: Any) -> None:
        log = self._session_log()
        if log is not None and isinstance(status, str):
            for line in status.split("\r\n"):
                log.write(ProtocolEvent.SEND, line)
            self._in_data = status.startswith("354")
            self._masking = status.startswith("334")
        await super().push(status)

    def data_received(self, data: bytes) -> None:
        log = self._session_log()
        if log is not None:
            self._received(log, data)
        super().data_received(data)

    def _received(self, log: ProtocolSession, data: bytes) -> None:
        *lines, self._pending = (self._pending + data).split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r")
            if self._in_data:
                self._data_bytes += len(raw) + 1
                if line == b".":
                    log.write(ProtocolEvent.INFORMATION, "", f"message data received ({self._data_bytes} bytes)")
                    self._in_data, self._data_bytes = False, 0
                continue
            log.write(ProtocolEvent.RECEIVE, masked(line.decode("utf-8", "replace"), self._masking))
            self._masking = False
        if self._in_data and len(self._pending) > 2:  # only a short line can be the end of the data
            self._data_bytes += len(self._pending) - 2
            self._pending = b"##"

    def _close(self) -> None:
        self._closed_here = True
        super()._close()

    def connection_lost(self, error: Optional[Exception]) -> None:
        if self._log is not None:
            self._log.write(ProtocolEvent.DISCONNECT, "", "Local" if self._closed_here else "Remote")
        super().connection_lost(error)
