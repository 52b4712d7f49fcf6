"""Helpers for the DSN and outbound tests: sending with per-recipient DSN parameters, reading reports."""

from __future__ import annotations

import asyncio
import email
import smtplib
import threading
from dataclasses import dataclass, field
from email.message import Message
from email.policy import compat32

from aiosmtpd.controller import Controller

from hubtools import free_port


def _send_sync(port: int, sender: str, recipients: dict[str, list[str]], msg: bytes,
               mail_options: list[str], login: tuple[str, str] | None) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.fabrikam.test", timeout=10) as s:
        s.ehlo()
        if login:
            s.login(*login)
        code, resp = s.mail(sender, mail_options)
        assert code == 250, resp
        for address, options in recipients.items():
            code, resp = s.rcpt(address, options)
            assert code == 250, (address, code, resp)
        return s.data(msg)


async def send_dsn(port: int, sender: str, recipients: dict[str, list[str]], msg: bytes,
                   mail_options: list[str] | None = None, login: tuple[str, str] | None = None) -> tuple[int, bytes]:
    """Send one message, each recipient with its own RCPT options (NOTIFY=…, ORCPT=…)."""
    return await asyncio.to_thread(_send_sync, port, sender, recipients, msg, mail_options or [], login)


def report_parts(raw: bytes) -> tuple[Message, Message, list[Message], Message]:
    """A delivery report parsed with `email`: (the message, the human part, the delivery-status field groups —
    per-message first, then one per recipient —, the returned original part)."""
    report = email.message_from_bytes(raw, policy=compat32)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    human, status, original = report.get_payload()
    assert human.get_content_type() == "text/plain"
    assert status.get_content_type() == "message/delivery-status"
    return report, human, status.get_payload(), original


# -- a second SMTP server on loopback: the smart host or the MX of a demo zone --------------------------------


@dataclass
class Received:
    """One message the sink took: envelope, content and which SMTP session carried it."""

    sender: str
    recipients: list[str]
    rcpt_options: list[list[str]]
    content: bytes
    session: int
    tls: bool
    authenticated: bool


@dataclass
class Sink:
    """An aiosmtpd handler that keeps what it receives and answers as told.

    `rcpt_replies` refuses recipients by address; `data_replies` are the replies to the next DATA commands, in
    order (then 250); `hold` makes DATA wait until it is set (to pile messages up behind one connection).
    """

    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_replies: list[str] = field(default_factory=list)
    hold: threading.Event | None = None
    received: list[Received] = field(default_factory=list)
    in_data: int = 0  # DATA commands seen
    active: int = 0  # DATA commands in progress now
    peak: int = 0  # the most in progress at once

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(list(rcpt_options))
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server, session, envelope):
        self.in_data += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        if self.hold is not None:
            await asyncio.to_thread(self.hold.wait, 10)
        self.active -= 1
        if self.data_replies:
            return self.data_replies.pop(0)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), list(envelope.rcpt_options),
                                      envelope.original_content or envelope.content, id(session),
                                      session.ssl is not None, bool(session.authenticated)))
        return "250 2.6.0 <sink> Queued mail for delivery"

    @property
    def sessions(self) -> set[int]:
        return {r.session for r in self.received}


class SinkServer:
    """`with SinkServer(sink) as port:` an aiosmtpd server on 127.0.0.1 in its own thread."""

    def __init__(self, sink: Sink, **kwargs) -> None:
        self.port = free_port()
        self.controller = Controller(sink, hostname="127.0.0.1", port=self.port, server_hostname="sink.fabrikam.test",
                                     **kwargs)

    def __enter__(self) -> int:
        self.controller.start()
        return self.port

    def __exit__(self, *exc) -> None:
        self.controller.stop()


def mx_zone(path) -> str:
    """A zone file for the outbound tests: fabrikam.test's MX is mx.fabrikam.test at 127.0.0.1, a-only.test has
    an A record and no MX, nullmx.test has a null MX; every other name is NXDOMAIN."""
    path.write_text("""$ORIGIN .
$TTL 300
. IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
fabrikam.test. IN MX 10 mx.fabrikam.test.
fabrikam.test. IN MX 20 backup.fabrikam.test.
mx.fabrikam.test. IN A 127.0.0.1
backup.fabrikam.test. IN A 127.0.0.1
a-only.test. IN A 127.0.0.1
nullmx.test. IN MX 0 .
""")
    return str(path)
