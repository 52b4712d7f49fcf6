"""examples.recipient_block: the ten-line custom agent the docs show, loaded by dotted path like any other."""

from __future__ import annotations

import logging

import pytest

from hubtools import RawSmtp, agent, header_value, make_message, messages, running_hub
from transport.core.agent import AgentContext
from transport.core.config import AgentEntry, TransportConfig
from transport.core.counters import Counters
from transport.core.dns import DnsResolver, DnsSettings
from transport.core.errors import AgentLoadError
from transport.core.pipeline import load_pipeline

EXAMPLE = "examples.recipient_block:RecipientBlockAgent"


async def test_listed_recipient_is_refused_at_rcpt(tmp_path):
    extra = {"agents": [agent(EXAMPLE, priority=10, blocked=["Bob@Contoso.com"])]}
    async with running_hub(tmp_path, extra) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1])
        await c.cmd("EHLO client.fabrikam.test")
        await c.cmd("MAIL FROM:<john@fabrikam.test>")
        assert await c.cmd("RCPT TO:<bob@contoso.com>") == "550 5.7.1 Recipient blocked by policy"
        assert await c.cmd("RCPT TO:<alice@contoso.com>") == "250 2.1.5 Recipient OK"
        assert (await c.cmd("DATA")).startswith("354")
        await c.write(make_message(message_id="<ex@fabrikam.test>") + b".\r\n")
        assert (await c.reply()).startswith("250 2.6.0 <ex@fabrikam.test>")
        await c.close()
        assert await hub.idle(), "the hub did not settle"
        assert messages(hub, "bob@contoso.com") == []
        [raw] = messages(hub, "alice@contoso.com")
        assert header_value(raw, "X-Example-Checked") == "Recipient Block Example"


async def test_reply_text_is_configurable(tmp_path):
    extra = {"agents": [agent(EXAMPLE, blocked=["alice@contoso.com"], reply="Alice is away")]}
    async with running_hub(tmp_path, extra) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1])
        await c.cmd("EHLO client.fabrikam.test")
        await c.cmd("MAIL FROM:<john@fabrikam.test>")
        assert await c.cmd("RCPT TO:<alice@contoso.com>") == "550 5.7.1 Alice is away"
        await c.close()


async def test_disabled_agent_does_nothing(tmp_path):
    extra = {"agents": [{**agent(EXAMPLE, blocked=["alice@contoso.com"]), "enabled": False}]}
    async with running_hub(tmp_path, extra) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1])
        await c.cmd("EHLO client.fabrikam.test")
        await c.cmd("MAIL FROM:<john@fabrikam.test>")
        assert await c.cmd("RCPT TO:<alice@contoso.com>") == "250 2.1.5 Recipient OK"
        await c.close()
        assert hub.pipeline.table() == []


def _context() -> AgentContext:
    config = TransportConfig()
    return AgentContext(config, DnsResolver(DnsSettings(use_network=False)), Counters(), logging.getLogger("t"))


def test_unknown_setting_in_agent_config_is_a_load_error():
    entry = AgentEntry.model_validate({"class": EXAMPLE, "config": {"blocked": [], "blokced": ["x"]}})
    with pytest.raises(AgentLoadError, match=r"^agents\.0\.config\.blokced: unknown setting$") as e:
        load_pipeline([entry], _context())
    assert e.value.path == ("agents", 0, "config", "blokced")


def test_pipeline_lists_the_example_under_its_events():
    entry = AgentEntry.model_validate({"class": EXAMPLE, "priority": 7})
    rows = load_pipeline([entry], _context()).table()
    assert [(r["event"], r["agent"], r["priority"]) for r in rows] == [
        ("OnRcptCommand", "Recipient Block Example", 7),
        ("OnEndOfData", "Recipient Block Example", 7),
    ]
