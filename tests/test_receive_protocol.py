"""The SMTP protocol on its own: bytes fed to a `ReceiveProtocol`, replies read back, no hub and no socket.

As aiosmtpd's own suite feeds bytes to its protocol, these tests build the session on a receive connector and a
submission path of their own: a real `Submission` on a real (temporary) queue store, the configuration's agent
pipeline, and nothing else of the hub. Only the network connection is stood in for, by a transport that keeps
what the protocol writes.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from hubtools import agent, make_message, write_config
from queues.store import SUBMISSION, QueueStore
from transport.core.agent import AgentContext
from transport.core.config import load_config
from transport.core.counters import Counters
from transport.core.dns import DnsResolver
from transport.core.mailitem import MailItem
from transport.core.pipeline import load_pipeline
from transport.core.tracking import TrackingLog
from transport.receive_connector import ReceiveConnectorServer
from transport.submission import Submission


class Wire(asyncio.Transport):
    """The client's side of a connection: what the protocol writes is kept, line by line."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.arrived = asyncio.Event()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("192.0.2.7", 40000), "sockname": ("127.0.0.1", 25)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.written += data
        self.arrived.set()

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True
        self.arrived.set()


class Session:
    """One protocol instance and its wire; `say` sends a line and returns the complete reply to it."""

    def __init__(self, connector: ReceiveConnectorServer) -> None:
        self.wire = Wire()
        self.protocol = connector.protocol()
        self.protocol.connection_made(self.wire)
        self._seen = 0

    async def reply(self) -> str:
        """The next complete reply (a last line `NNN text`), or what is left when the session closed."""
        while True:
            text = self.wire.written[self._seen:].decode()
            lines = text.split("\r\n")
            for i, line in enumerate(lines[:-1]):
                if len(line) >= 4 and line[3] == " ":
                    self._seen += len("\r\n".join(lines[:i + 1])) + 2
                    return "\r\n".join(lines[:i + 1])
            if self.wire.closed:
                self._seen = len(self.wire.written)
                return text
            self.wire.arrived.clear()
            await asyncio.wait_for(self.wire.arrived.wait(), 5)

    async def say(self, data: bytes) -> str:
        self.protocol.data_received(data)
        return await self.reply()


class Feed:
    """The categorizer as the submission path sees it, keeping what it is handed: these tests are of receive, so
    every message goes through the Submission queue."""

    def __init__(self) -> None:
        self.pushed: list[MailItem] = []
        self.backlog = 0

    def route_ahead(self, item: MailItem) -> None:
        return None

    def routed(self, item: MailItem, deliveries: dict[str, list[str]], ids: dict[str, int]) -> None:
        raise AssertionError("nothing is routed ahead here")

    def push(self, item: MailItem) -> None:
        self.pushed.append(item)


class Parts:
    def __init__(self, tmp_path: Path, extra: dict[str, Any] | None = None) -> None:
        self.config = load_config(write_config(tmp_path, extra))
        root = self.config.data_root
        self.store = QueueStore(root / "queue" / "mail.que", durable=False)
        self.tracking = TrackingLog(root / "logs", self.config.receive.fqdn)
        context = AgentContext(self.config, DnsResolver(self.config.dns), Counters(), logging.getLogger())
        self.pipeline = load_pipeline(self.config.agents, context)
        self.categorizer = Feed()
        self.submission = Submission(self.config, self.pipeline, self.store, self.tracking, self.categorizer)
        self.connector = ReceiveConnectorServer(self.config.receive, self.config, self.submission)


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Parts]:
    p = Parts(tmp_path)
    p.store.open()
    yield p
    await p.store.close()


async def test_a_whole_transaction_is_committed_before_the_250(parts):
    s = Session(parts.connector)
    assert (await s.reply()).startswith("220 hub.contoso.com Microsoft ESMTP MAIL Service ready")
    assert "250-PIPELINING" in await s.say(b"EHLO client.fabrikam.test\r\n")
    assert await s.say(b"MAIL FROM:<john@fabrikam.test>\r\n") == "250 2.1.0 Sender OK"
    assert await s.say(b"RCPT TO:<alice@contoso.com>\r\n") == "250 2.1.5 Recipient OK"
    assert (await s.say(b"DATA\r\n")).startswith("354 ")
    reply = await s.say(make_message(message_id="<p1@fabrikam.test>") + b".\r\n")
    assert reply.startswith("250 2.6.0 <p1@fabrikam.test> [InternalId=1, Hostname=hub.contoso.com]")
    stored = parts.store.items("queue=?", (SUBMISSION,))
    assert [i.recipients for i in stored] == [["alice@contoso.com"]]
    item = parts.store.load_message(stored[0].message)
    assert item.session.client_ip == "192.0.2.7" and item.session.helo == "client.fabrikam.test"
    assert item.header("X-MS-Exchange-Organization-AuthAs") == "Anonymous"
    assert item.header("Received").startswith("from client.fabrikam.test ([192.0.2.7]) by hub.contoso.com")
    assert [i.message_id for i in parts.categorizer.pushed] == ["<p1@fabrikam.test>"]
    assert await s.say(b"QUIT\r\n") == "221 2.0.0 Service closing transmission channel"


async def test_sequence_errors_relay_and_back_pressure_are_answered_by_the_protocol(parts):
    s = Session(parts.connector)
    await s.reply()
    assert await s.say(b"MAIL FROM:<john@fabrikam.test>\r\n") == "503 5.5.2 Send hello first"
    await s.say(b"EHLO client.fabrikam.test\r\n")
    assert await s.say(b"RCPT TO:<alice@contoso.com>\r\n") == "503 5.5.2 Need mail command"
    await s.say(b"MAIL FROM:<john@fabrikam.test>\r\n")
    assert await s.say(b"RCPT TO:<someone@fabrikam.test>\r\n") == "550 5.7.1 Unable to relay"
    assert await s.say(b"DATA\r\n") == "503 5.5.2 Need rcpt command"
    await s.say(b"RSET\r\n")
    parts.categorizer.backlog = parts.config.queue.max_submission_queue_length + 1
    assert await s.say(b"MAIL FROM:<john@fabrikam.test>\r\n") == "452 4.3.1 Insufficient system resources"
    assert parts.store.items() == []


async def test_an_end_of_data_reject_is_the_reply_and_nothing_is_queued(tmp_path):
    p = Parts(tmp_path, {"agents": [agent("hubtools:Act", event="on_end_of_data", action="reject")]})
    p.store.open()
    try:
        s = Session(p.connector)
        await s.reply()
        for line in (b"EHLO c.test\r\n", b"MAIL FROM:<john@fabrikam.test>\r\n", b"RCPT TO:<alice@contoso.com>\r\n",
                     b"DATA\r\n"):
            await s.say(line)
        reply = await s.say(make_message() + b".\r\n")
        assert reply.startswith("550 5.7.1"), reply
        assert p.store.items() == [] and p.categorizer.pushed == []
    finally:
        await p.store.close()
