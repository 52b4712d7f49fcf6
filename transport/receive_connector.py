"""Receive connectors: their listeners, their sessions, their STARTTLS certificates, and shutdown.

A `ReceiveConnectorServer` is the small object every SMTP session (`transport.receive.ReceiveProtocol`) is handed,
as aiosmtpd's protocol is handed its handler: the connector's settings, the organisation's configuration (accepted
domains, mailboxes for AUTH), the agent pipeline and the submission path. Nothing of the hub.

`ReceiveConnectors` holds them all and listens once per binding. Several connectors may share a binding, as
Exchange's do; each session is taken by the connector whose `remote_ip_ranges` match the client most
specifically (a client no connector serves is disconnected).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from .connection_limits import ConnectionLimits
from .core.clock import Clock, real_time
from .core.config import ProtocolLoggingLevel, ReceiveConnector, TransportConfig, parse_binding
from .core.internal_servers import is_internal, normalise, parse_internal_servers
from .core.pipeline import Pipeline
from .core.protocol_log import Direction, ProtocolLog, protocol_log
from .core.sources import SubmissionPath
from .protocol_logging import LoggedReceiveProtocol
from .receive import ReceiveProtocol

__all__ = ["ReceiveConnectorServer", "ReceiveConnectors"]

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
        self.bound: list[socket.socket] = []  # listening sockets its receive worker processes serve
        self._template: ReceiveProtocol | None = None
        self.remote_ranges = parse_internal_servers(settings.remote_ip_ranges)
        self.xclient_trusted = parse_internal_servers(settings.xclient_trusted)
        self.tarpit: Callable[[float], Awaitable[None]] = asyncio.sleep  # TarpitInterval's wait (tests record it)
        self.siblings: dict[tuple[str, int], list["ReceiveConnectorServer"]] = {}  # listening address → its connectors
        self.protocol_log: ProtocolLog | None = None  # set when ProtocolLoggingLevel is Verbose
        self.session_class: type[ReceiveProtocol] = ReceiveProtocol  # LoggedReceiveProtocol when any connector logs

    @property
    def template(self) -> ReceiveProtocol:
        """The session built once the slow way, that new sessions copy (see ReceiveProtocol.__init__)."""
        if self._template is None:
            self._template = self.session_class.template(self)
        return self._template

    def protocol(self) -> ReceiveProtocol:
        """A new session (the server's protocol factory); `choose` may hand it to a sibling connector."""
        return self.session_class(self, self.template)

    def specificity(self, ip: str) -> int:
        """The prefix length of the most specific remote IP range matching the client; -1 when none does."""
        address = normalise(ipaddress.ip_address(ip))
        return max((n.prefixlen for n in self.remote_ranges if address.version == n.version and address in n), default=-1)

    def choose(self, local: tuple[str, int], remote_ip: str) -> "ReceiveConnectorServer | None":
        """The connector that serves this client on this listening address (most specific range wins)."""
        candidates = self.siblings.get(local, [self])
        if len(candidates) == 1:
            return self if self.specificity(remote_ip) >= 0 else None
        best = max(candidates, key=lambda c: c.specificity(remote_ip))
        return best if best.specificity(remote_ip) >= 0 else None

    def xclient_allowed(self, ip: str) -> bool:
        return is_internal(ip, self.xclient_trusted)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where the listeners actually are (ports resolved when the configuration said 0)."""
        if self.bound:
            return list(dict.fromkeys(sock.getsockname()[:2] for sock in self.bound))
        return [s.sockets[0].getsockname()[:2] for s in self.servers if s.sockets]

    async def close(self, grace: float) -> None:
        """Stop accepting; idle sessions are told 421 at once, a message being received may finish within
        `grace` seconds, then every session goes."""
        self.draining = True
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


class ReceiveConnectors:
    """Every receive connector of the configuration, listening once per distinct binding."""

    def __init__(self, config: TransportConfig, submission: SubmissionPath, clock: Clock = real_time) -> None:
        self.connectors = [ReceiveConnectorServer(rc, config, submission) for rc in config.receive_connectors]
        self.servers: list[asyncio.AbstractServer] = []
        self.bound: list[socket.socket] = []  # one listening socket per address (receive worker processes serve them)
        self._bound_all: list[socket.socket] = []
        logged = [c for c in self.connectors if c.settings.protocol_logging_level is ProtocolLoggingLevel.VERBOSE]
        self.protocol_log = protocol_log(config, Direction.RECEIVE, clock) if logged else None
        for connector in self.connectors:
            connector.session_class = LoggedReceiveProtocol if logged else ReceiveProtocol
            connector.protocol_log = self.protocol_log if connector in logged else None

    def connector(self, name: str) -> ReceiveConnectorServer:
        return next(c for c in self.connectors if c.settings.name == name)

    def _groups(self) -> list[tuple[str, int, list[ReceiveConnectorServer]]]:
        """(host, port, the connectors sharing it) per listening address, in the configuration's order."""
        groups: dict[tuple[str, int, int], list[ReceiveConnectorServer]] = {}
        for i, connector in enumerate(self.connectors):
            for binding in connector.settings.bindings:
                host, port = parse_binding(binding)
                groups.setdefault((host, port, i if port == 0 else -1), []).append(connector)  # port 0: its own
        return [(host, port, group) for (host, port, _), group in groups.items()]

    def bind(self, shares: list[int]) -> list[list[socket.socket]]:
        """For each receive process (the workers, then the hub's own when it receives too), its listening sockets,
        to serve with `start(sockets)`: `shares[i]` sockets per address (each a block of one per address, in
        `_groups` order). Every socket for one address shares its port with SO_REUSEPORT, and the kernel spreads
        new connections evenly over the sockets, so a process with two per address takes twice the connections
        of one with one (one shared socket would let the process that wakes first accept every waiting one)."""
        blocks: list[list[list[socket.socket]]] = [[[] for _ in range(share)] for share in shares]
        made: list[socket.socket] = []
        try:
            for host, port, group in self._groups():
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                for block in (b for process in blocks for b in process):
                    sock = socket.create_server((host, port), family=family, backlog=511, reuse_port=True,
                                                dualstack_ipv6=family == socket.AF_INET6 and host == "::")
                    made.append(sock)
                    port = sock.getsockname()[1]  # port 0: the others take the port the first was given
                    block.append(sock)
                    for connector in group:
                        connector.bound.append(sock)
                self.bound.append(blocks[0][0][-1])
        except OSError:
            for sock in made:
                sock.close()
            raise
        self._bound_all = made
        return [[sock for block in process for sock in block] for process in blocks]

    async def start(self, sockets: list[socket.socket] | None = None) -> None:
        """Listen on every address, or serve sockets `bind` made (in a receive worker process, or in the hub's
        beside its workers): socket j serves the address `j % addresses`."""
        loop = asyncio.get_running_loop()
        groups = self._groups()
        for j in range(len(sockets) if sockets is not None else len(groups)):
            host, port, group = groups[j % len(groups)]
            if sockets is None:
                server = await loop.create_server(group[0].protocol, host, port, reuse_address=True)
            else:
                server = await loop.create_server(group[0].protocol, sock=sockets[j])
            local = server.sockets[0].getsockname()[:2] if server.sockets else (host, port)
            for connector in group:
                connector.servers.append(server)
                connector.siblings[local] = group
            self.servers.append(server)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every listening address, the first connector's first."""
        if self.bound:
            return [sock.getsockname()[:2] for sock in self.bound]
        return [s.sockets[0].getsockname()[:2] for s in self.servers if s.sockets]

    async def close(self, grace: float) -> None:
        for server in self.servers:
            server.close()
        for sock in self._bound_all:
            sock.close()
        await asyncio.gather(*(c.close(grace) for c in self.connectors))
        if self.protocol_log is not None:
            self.protocol_log.close()


def _make_self_signed(cert: Path, key: Path, fqdn: str) -> bool:
    """A self-signed certificate for STARTTLS, made once with the system's openssl."""
    if shutil.which("openssl") is None:
        return False
    cert.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", f"/CN={fqdn}",
         "-keyout", str(key), "-out", str(cert)], capture_output=True)
    return result.returncode == 0
