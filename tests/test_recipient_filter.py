"""The Recipient Filter agent over real SMTP: recipient validation, blocked recipients, and the connector's tarpit."""

from __future__ import annotations

import pytest

from agents.recipient_filter import COUNTERS
from filtertools import RECIPIENT_FILTER, as_client, hub_with, send_raw
from hubtools import agent, make_message, messages, running_hub, send, tracking

UNKNOWN = "550 5.1.1 User unknown"


def recipient_filter(**config) -> dict:
    return agent(RECIPIENT_FILTER, 3, **config)


async def test_unknown_recipients_refused_at_rcpt(tmp_path):
    extra = hub_with(recipient_filter(recipient_validation_enabled=True))
    extra["accepted_domains"] = [{"domain": "contoso.com"}, {"domain": "relay.contoso.com", "type": "InternalRelay"}]
    async with running_hub(tmp_path, extra) as hub:
        c = await as_client(hub.addresses[0][1], "203.0.113.5")
        replies = await send_raw(c, "x@fabrikam.com", ["nobody@contoso.com", "anyone@relay.contoso.com",
                                                       "alice@contoso.com"], make_message(message_id="<rv@t>"))
        assert replies[1:4] == [UNKNOWN, "250 2.1.5 Recipient OK", "250 2.1.5 Recipient OK"]
        assert replies[-1].startswith("250 2.6.0")
        assert await hub.idle(), "the hub did not settle"
        assert len(messages(hub, "alice@contoso.com")) == 1
        assert not [r for r in tracking(hub) if r["event-id"] == "FAIL" and r["recipient-address"] == "nobody@contoso.com"]
        assert hub.counters.get(COUNTERS, "Recipients Rejected by Recipient Validation") == 1


async def test_without_validation_the_categorizer_fails_them_later(tmp_path):
    async with running_hub(tmp_path, hub_with(recipient_filter())) as hub:
        c = await as_client(hub.addresses[0][1], "203.0.113.5")
        replies = await send_raw(c, "x@fabrikam.com", ["nobody@contoso.com"], make_message())
        assert replies[1] == "250 2.1.5 Recipient OK"


@pytest.mark.parametrize("enabled, expected", [(True, UNKNOWN), (False, "250 2.1.5 Recipient OK")])
async def test_blocked_recipients_only_with_the_block_list_on(tmp_path, enabled, expected):
    config = recipient_filter(blocked_recipients=["Bob@contoso.com"], block_list_enabled=enabled)
    async with running_hub(tmp_path, hub_with(config)) as hub:
        c = await as_client(hub.addresses[0][1], "203.0.113.5")
        assert (await send_raw(c, "x@fabrikam.com", ["bob@contoso.com"], make_message()))[1] == expected


async def test_tarpit_holds_back_5_1_1_replies_only(tmp_path):
    waits: list[float] = []

    async def tarpit(seconds: float) -> None:
        waits.append(seconds)

    extra = hub_with(recipient_filter(recipient_validation_enabled=True), tarpit_interval="5s")
    async with running_hub(tmp_path, extra, before_start=lambda hub: setattr(hub.receive, "tarpit", tarpit)) as hub:
        c = await as_client(hub.addresses[0][1], "203.0.113.5")
        replies = await send_raw(c, "x@fabrikam.com", ["nobody@contoso.com", "alice@contoso.com"], make_message())
        assert replies[1] == UNKNOWN and replies[2].startswith("250 2.1.5")
        assert waits == [5.0]


async def test_no_tarpit_when_the_interval_is_zero(tmp_path):
    waits: list[float] = []

    async def tarpit(seconds: float) -> None:
        waits.append(seconds)

    extra = hub_with(recipient_filter(recipient_validation_enabled=True))  # tarpit_interval 0
    async with running_hub(tmp_path, extra, before_start=lambda hub: setattr(hub.receive, "tarpit", tarpit)) as hub:
        c = await as_client(hub.addresses[0][1], "203.0.113.5")
        assert (await send_raw(c, "x@fabrikam.com", ["nobody@contoso.com"], make_message()))[1] == UNKNOWN
        assert waits == []


async def test_authenticated_sessions_bypass_validation(tmp_path):
    async with running_hub(tmp_path, hub_with(recipient_filter(recipient_validation_enabled=True))) as hub:
        refused, reply = await send(hub.addresses[0][1], "alice@contoso.com", ["nobody@contoso.com"], make_message(),
                                    login=("alice@contoso.com", "Passw0rd!"))
        assert refused == {} and reply[0] == 250
