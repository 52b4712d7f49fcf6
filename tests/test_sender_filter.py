"""The Sender Filter agent over real SMTP: blocked senders, domains, subdomains, blank senders, both actions."""

from __future__ import annotations

import pytest

from agents.sender_filter import COUNTERS
from filtertools import SENDER_FILTER, as_client, hub_with, send_raw
from hubtools import agent, make_message, messages, running_hub, tracking

DENIED = "554 5.1.0 Sender denied"


def sender_filter(**config) -> dict:
    return agent(SENDER_FILTER, 2, **config)


@pytest.mark.parametrize("config, sender, denied", [
    ({"blocked_senders": ["Spammer@Fabrikam.example"]}, "spammer@fabrikam.example", True),
    ({"blocked_senders": ["spammer@fabrikam.example"]}, "someone@fabrikam.example", False),
    ({"blocked_domains": ["fabrikam.example"]}, "anyone@fabrikam.example", True),
    ({"blocked_domains": ["fabrikam.example"]}, "anyone@mail.fabrikam.example", False),  # exact domains only
    ({"blocked_domains_and_subdomains": ["*.fabrikam.example"]}, "anyone@mail.fabrikam.example", True),
    ({"blocked_domains_and_subdomains": ["fabrikam.example"]}, "anyone@fabrikam.example", True),
    ({"blocked_domains_and_subdomains": ["fabrikam.example"]}, "anyone@notfabrikam.example", False),
])
async def test_mail_from_is_judged(tmp_path, config, sender, denied):
    async with running_hub(tmp_path, hub_with(sender_filter(**config))) as hub:
        c = await as_client(hub.addresses[0][1], "203.0.113.5")
        reply = await c.cmd(f"MAIL FROM:<{sender}>")
        assert (reply == DENIED) is denied, reply
        assert hub.counters.get(COUNTERS, "Messages Filtered by Sender Filter") == int(denied)


async def test_from_and_sender_headers_at_end_of_headers(tmp_path):
    async with running_hub(tmp_path, hub_with(sender_filter(blocked_senders=["boss@fabrikam.example"]))) as hub:
        port = hub.addresses[0][1]
        replies = await send_raw(await as_client(port, "203.0.113.5"), "ok@fabrikam.com", ["alice@contoso.com"],
                                 make_message(sender="boss@fabrikam.example"))
        assert replies[-1] == DENIED
        replies = await send_raw(await as_client(port, "203.0.113.5"), "ok@fabrikam.com", ["alice@contoso.com"],
                                 make_message(sender="ok@fabrikam.com", extra_headers="Sender: boss@fabrikam.example\r\n"))
        assert replies[-1] == DENIED
        assert hub.counters.get(COUNTERS, "Messages Evaluated by Sender Filter") == 2


@pytest.mark.parametrize("enabled", [True, False])
async def test_blank_sender(tmp_path, enabled):
    no_p2 = b"To: alice@contoso.com\r\nSubject: no sender\r\n\r\nbody\r\n"
    async with running_hub(tmp_path, hub_with(sender_filter(blank_sender_blocking_enabled=enabled))) as hub:
        port = hub.addresses[0][1]
        replies = await send_raw(await as_client(port, "203.0.113.5"), "", ["alice@contoso.com"], no_p2)
        assert (replies[-1] == DENIED) is enabled, replies
        # a null reverse path with a From header is a bounce, never blank
        replies = await send_raw(await as_client(port, "203.0.113.5"), "", ["alice@contoso.com"],
                                 make_message(sender="mailer-daemon@fabrikam.com"))
        assert replies[-1].startswith("250 2.6.0")


async def test_stamp_status_lets_the_message_through_and_records_it(tmp_path):
    config = sender_filter(blocked_senders=["spammer@fabrikam.example"], action="StampStatus")
    async with running_hub(tmp_path, hub_with(config)) as hub:
        c = await as_client(hub.addresses[0][1], "203.0.113.5")
        replies = await send_raw(c, "spammer@fabrikam.example", ["alice@contoso.com"],
                                 make_message(sender="spammer@fabrikam.example", message_id="<st@t>"))
        assert replies[0].startswith("250 2.1.0") and replies[-1].startswith("250 2.6.0")
        assert await hub.idle(), "the hub did not settle"
        assert len(messages(hub, "alice@contoso.com")) == 1
        info = [r["custom-data"] for r in tracking(hub) if r["event-id"] == "AGENTINFO" and r["message-id"] == "<st@t>"]
        assert info == ["Sender Filter Agent: Stamp at on_end_of_headers (blocked sender spammer@fabrikam.example)"]


async def test_authenticated_sessions_bypass(tmp_path):
    async with running_hub(tmp_path, hub_with(sender_filter(blocked_domains=["contoso.com"]))) as hub:
        from hubtools import send
        _, reply = await send(hub.addresses[0][1], "alice@contoso.com", ["bob@contoso.com"], make_message(),
                              login=("alice@contoso.com", "Passw0rd!"))
        assert reply[0] == 250
