"""A receive connector: its listeners, its sessions, its STARTTLS certificate, and shutdown.

This is the small object every SMTP session (`transport.receive.ReceiveProtocol`) is handed, as aiosmtpd's
protocol is handed its handler: the connector's settings, the organisation's configuration (accepted domains,
mailboxes for AUTH), the agent pipeline and the submission path. Nothing of the hub.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
import time
from pathlib import Path

from .connection_limits import ConnectionLimits
from .core.config import ReceiveConnector, TransportConfig, parse_binding
from .core.pipeline import Pipeline
from .core.sources import SubmissionPath
from .receive import ReceiveProtocol

__all__ = ["ReceiveConnectorServer"]

log = logging.getLogger("transport.receive")


class ReceiveConnectorServer:
    """Serves one receive connector's bindings; `start()`, then `close()`."""

    def __init__(self, settings: ReceiveConnector, config: TransportConfig, submission: SubmissionPath) -> None:
        self.settings = settings
        self.config = config
        self.submission = submission
        self.pipeline: Pipeline = submission.pipeline
        self.sessions: set[ReceiveProtocol] = set()
        self.limits = ConnectionLimits(settings)
        self.draining = False
        self.tls = self._tls_context()
        self.servers: list[asyncio.AbstractServer] = []
        self._template: ReceiveProtocol | None = None

    def protocol(self) -> ReceiveProtocol:
        """A new session (the server's protocol factory)."""
        if self._template is None:
            self._template = ReceiveProtocol.template(self)
        return ReceiveProtocol(self, self._template)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for binding in self.settings.bindings:
            host, port = parse_binding(binding)
            self.servers.append(await loop.create_server(self.protocol, host, port, reuse_address=True))

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where the listeners actually are (ports resolved when the configuration said 0)."""
        return [s.sockets[0].getsockname()[:2] for s in self.servers if s.sockets]

    async def close(self, grace: float) -> None:
        """Stop accepting; idle sessions are told 421 at once, a message being received may finish within
        `grace` seconds, then every session goes."""
        self.draining = True
        for server in self.servers:
            server.close()
        deadline = time.monotonic() + grace
        while self.sessions and time.monotonic() < deadline:
            for session in [s for s in self.sessions if not s.busy]:
                session.shut_down()
            await asyncio.sleep(0.05)
        for session in list(self.sessions):
            session.shut_down()

    def _tls_context(self) -> ssl.SSLContext | None:
        tls = self.settings.tls
        if not tls.enabled:
            return None
        cert, key = tls.certificate, tls.key
        if cert is None:
            cert, key = self.config.data_root / "tls" / "cert.pem", self.config.data_root / "tls" / "key.pem"
            if not cert.exists() and not _make_self_signed(cert, key, self.settings.fqdn):
                log.warning("STARTTLS is off: no certificate configured and openssl could not make one")
                return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key) if key else None)
        return ctx


def _make_self_signed(cert: Path, key: Path, fqdn: str) -> bool:
    """A self-signed certificate for STARTTLS, made once with the system's openssl."""
    if shutil.which("openssl") is None:
        return False
    cert.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", f"/CN={fqdn}",
         "-keyout", str(key), "-out", str(cert)], capture_output=True)
    return result.returncode == 0
