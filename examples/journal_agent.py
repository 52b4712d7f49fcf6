"""An example routing agent that submits mail: envelope journaling, as Exchange's Journal agent does it.

For each message sent by or to one of the mailboxes it names, it submits a journal report to the journal mailbox:
a report body listing Sender, Subject, Message-Id and every envelope recipient (To:, Cc: or, for recipients the
headers do not show, Bcc:), with the original attached, byte for byte, as `message/rfc822`. The report comes from
the Microsoft Exchange recipient with a null envelope sender and carries `X-MS-Journal-Report`.

It runs at OnRoutedMessage, where Exchange's Journal agent runs, and submits through `Agent.submit`: the report
is queued durably with source AGENT, and it is never handed back to this agent, so journaling the journal
mailbox itself cannot loop. Enable it in transport.yaml:

    agents:
      - class: examples.journal_agent:JournalAgent
        priority: 20
        config:
          journal_mailbox: administrator@contoso.com
          mailboxes: [alice@contoso.com]
"""

from __future__ import annotations

import uuid
from email.utils import formatdate

from pydantic import field_validator

from agents import AgentConfig, MailItem, RoutedEvent, RoutingAgent, addresses

EXCHANGE_RECIPIENT = "MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e"
"""The local part of the Microsoft Exchange recipient, which sends the organisation's system messages."""


class JournalAgent(RoutingAgent):
    name = "Journal Agent"
    description = "Submits an envelope journal report for mail sent by or to the listed mailboxes."

    class Config(AgentConfig):
        journal_mailbox: str
        mailboxes: frozenset[str] = frozenset()  # whose mail is journaled (sender or any recipient); empty: every message

        @field_validator("mailboxes", mode="after")
        @classmethod
        def _lower(cls, v: frozenset[str]) -> frozenset[str]:
            return frozenset(a.lower() for a in v)  # once, not per message

    async def on_routed(self, event: RoutedEvent) -> None:
        item = event.mail_item
        watched = self.config.mailboxes
        involved = {item.sender.lower()} | {r.address.lower() for r in item.recipients}
        if watched and not watched & involved:
            return
        await self.submit(self.report(item), "", [self.config.journal_mailbox])

    def report(self, item: MailItem) -> bytes:
        """The envelope journal report of a message (headers, the report body, the original attached)."""
        shown = {kind: {a.lower() for _, a in addresses(item.header_values(kind))} for kind in ("To", "Cc")}
        lines = [f"Sender: {item.sender}", f"Subject: {item.subject}", f"Message-Id: {item.message_id}"]
        for r in item.recipients:
            kind = next((k for k in ("To", "Cc") if r.address.lower() in shown[k]), "Bcc")
            lines.append(f"{kind}: {r.address}")
        domain = self.config.journal_mailbox.rpartition("@")[2]
        boundary = f"journal-{uuid.uuid4().hex}"
        head = (f"From: Microsoft Exchange <{EXCHANGE_RECIPIENT}@{domain}>\r\n"
                f"To: {self.config.journal_mailbox}\r\n"
                f"Subject: {item.subject}\r\n"
                f"Date: {formatdate(localtime=True)}\r\n"
                f"X-MS-Journal-Report: \r\n"
                f"MIME-Version: 1.0\r\n"
                f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n')
        body = (f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + "\r\n".join(lines) + "\r\n\r\n"
                f"--{boundary}\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n")
        return (head + body).encode("utf-8", "surrogateescape") + item.content() + f"\r\n--{boundary}--\r\n".encode()
