"""Helpers for the front-line filter tests: a hub whose receive connector trusts XCLIENT from 127.0.0.1, and a
session that plays a client IP and HELO name through XCLIENT."""

from __future__ import annotations

from typing import Any

from hubtools import REPO, RawSmtp, agent

ZONE = str(REPO / "examples" / "zones" / "demo.zone")
CONNECTION_FILTER = "agents.connection_filter:ConnectionFilteringAgent"
SENDER_FILTER = "agents.sender_filter:SenderFilterAgent"
RECIPIENT_FILTER = "agents.recipient_filter:RecipientFilterAgent"
REVERSE_DNS = "agents.reverse_dns:ReverseDnsAgent"
SENDERID = "agents.senderid:SenderIdAgent"


def hub_with(*agents: dict[str, Any], zone_files: list[str] | None = None, **receive: Any) -> dict[str, Any]:
    """Configuration extras: XCLIENT trusted from 127.0.0.1, no tarpit, the demo zones, these agents."""
    return {"receive": {"xclient_trusted": ["127.0.0.1"], "tarpit_interval": 0, **receive},
            "dns": {"zone_files": zone_files if zone_files is not None else [ZONE], "use_network": False},
            "agents": list(agents)}


def connection_filter(**config: Any) -> dict[str, Any]:
    return agent(CONNECTION_FILTER, 1, **config)


async def as_client(port: int, ip: str, helo: str = "mail.fabrikam.com") -> RawSmtp:
    """A session that the hub believes comes from `ip` with HELO `helo` (XCLIENT, then EHLO)."""
    c = await RawSmtp.connect(port)
    assert (await c.cmd("EHLO tester.local")).startswith("250")
    reply = await c.cmd(f"XCLIENT ADDR={ip} HELO={helo}")
    assert reply.startswith("220 hub.contoso.com"), reply
    assert (await c.cmd("EHLO tester.local")).startswith("250")
    return c


async def send_raw(c: RawSmtp, sender: str, recipients: list[str], body: bytes) -> list[str]:
    """MAIL, each RCPT, and DATA when a recipient was accepted: every reply, in order."""
    replies = [await c.cmd(f"MAIL FROM:<{sender}>")]
    if not replies[0].startswith("250"):
        return replies
    replies += [await c.cmd(f"RCPT TO:<{r}>") for r in recipients]
    if any(r.startswith("250") for r in replies[1:]):
        data = await c.cmd("DATA")
        replies.append(data)
        if data.startswith("354"):
            await c.write(body.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
            replies.append(await c.reply())
    return replies
