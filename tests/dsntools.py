"""Helpers for the DSN and outbound tests: sending with per-recipient DSN parameters, reading reports."""

from __future__ import annotations

import asyncio
import email
import smtplib
from email.message import Message
from email.policy import compat32


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
