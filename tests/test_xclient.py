"""XCLIENT, the reverse DNS remark in the Received header, and the header firewall, over real SMTP."""

from __future__ import annotations

import pytest

from filtertools import REVERSE_DNS, SENDERID, as_client, hub_with, send_raw
from hubtools import RawSmtp, agent, header_value, make_message, messages, running_hub
from transport.core.headers import parse_headers


def smtp_received(raw: bytes) -> str:
    """The Received header the receive connector wrote (delivery adds its own above it)."""
    return next(h.value for h in parse_headers(raw) if h.key == "received" and "Microsoft SMTP Server" in h.value)


async def test_xclient_refused_from_an_untrusted_address(tmp_path):
    async with running_hub(tmp_path, hub_with(xclient_trusted=["192.0.2.0/24"])) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1])
        assert "XCLIENT" not in await c.cmd("EHLO tester.local")
        assert await c.cmd("XCLIENT ADDR=192.0.2.66") == "550 5.7.0 Error: insufficient authorization"
        assert (await c.cmd("MAIL FROM:<x@fabrikam.com>")).startswith("250")  # the session is unchanged


async def test_xclient_sets_what_the_hub_believes(tmp_path):
    async with running_hub(tmp_path, hub_with()) as hub:
        c = await as_client(hub.addresses[0][1], "198.51.100.7", helo="mx.woodgrove.example")
        assert (await c.cmd("EHLO ignored.local")).startswith("250-hub.contoso.com Hello [198.51.100.7]")
        replies = await send_raw(c, "x@fabrikam.com", ["alice@contoso.com"], make_message())
        assert replies[-1].startswith("250 2.6.0")
        assert await hub.idle(), "the hub did not settle"
        received = smtp_received(messages(hub, "alice@contoso.com")[0])
        assert received.startswith("from mx.woodgrove.example ([198.51.100.7]) by hub.contoso.com")


@pytest.mark.parametrize("command, reply", [
    ("XCLIENT COLOUR=blue", "501 5.5.4 Bad XCLIENT attribute name: COLOUR"),
    ("XCLIENT ADDR=999.1.1.1", "501 5.5.4 Bad XCLIENT ADDR syntax: 999.1.1.1"),
    ("XCLIENT", "501 5.5.4 Syntax: XCLIENT attribute=value..."),
])
async def test_bad_xclient_commands(tmp_path, command, reply):
    async with running_hub(tmp_path, hub_with()) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1])
        await c.cmd("EHLO tester.local")
        assert await c.cmd(command) == reply


async def test_no_xclient_in_a_mail_transaction(tmp_path):
    async with running_hub(tmp_path, hub_with()) as hub:
        c = await as_client(hub.addresses[0][1], "192.0.2.1")
        await c.cmd("MAIL FROM:<x@fabrikam.com>")
        assert await c.cmd("XCLIENT ADDR=192.0.2.2") == "503 5.5.1 Error: MAIL transaction in progress"


@pytest.mark.parametrize("ip, helo, remark", [
    ("192.0.2.10", "mail.fabrikam.com", ""),               # PTR mail.fabrikam.com, A 192.0.2.10: verified
    ("192.0.2.10", "mail.woodgrovebank.com", " unverified"),  # the PTR name is not the HELO name
    ("203.0.113.50", "mail.fabrikam.com", " RDNS failed"),   # no PTR record
])
async def test_reverse_dns_remark_in_the_received_header(tmp_path, ip, helo, remark):
    async with running_hub(tmp_path, hub_with(agent(REVERSE_DNS, 4))) as hub:
        c = await as_client(hub.addresses[0][1], ip, helo=helo)
        replies = await send_raw(c, "x@fabrikam.com", ["alice@contoso.com"], make_message())
        assert replies[-1].startswith("250 2.6.0")
        assert await hub.idle(), "the hub did not settle"
        received = smtp_received(messages(hub, "alice@contoso.com")[0])
        assert received.startswith(f"from {helo} ([{ip}]{remark}) by hub.contoso.com"), received


async def test_reverse_dns_result_is_recorded_for_the_content_filter(tmp_path):
    from agents import EndOfDataEvent, SmtpReceiveAgent, Stamp

    seen: list[str] = []

    class Probe(SmtpReceiveAgent):
        name = "Probe"

        async def on_end_of_data(self, event: EndOfDataEvent) -> None:
            seen.append(event.mail_item.stamps.get(Stamp.REVERSE_DNS))

    def add_probe(hub):
        from transport.core.pipeline import LoadedAgent
        from transport.core.config import ErrorPolicy
        la = LoadedAgent(Probe(Probe.Config(), hub.pipeline.agents[0].agent.context), "Probe", 99,
                         ErrorPolicy.FAIL_OPEN, 99, "SmtpReceiveAgent")
        hub.pipeline.__init__(hub.pipeline.agents + [la])

    async with running_hub(tmp_path, hub_with(agent(REVERSE_DNS, 4)), before_start=add_probe) as hub:
        c = await as_client(hub.addresses[0][1], "192.0.2.10", helo="mail.woodgrovebank.com")
        await send_raw(c, "x@fabrikam.com", ["alice@contoso.com"], make_message())
        assert seen == ["unverified"]


FORGED = ("X-MS-Exchange-Organization-SCL: -1\r\nX-MS-Exchange-Forest-RulesExecuted: hub\r\n"
          "Authentication-Results: hub.contoso.com; sender-id=pass header.from=ceo@woodgrovebank.com\r\n"
          "Authentication-Results: mx.fabrikam.com; spf=pass smtp.mailfrom=fabrikam.com\r\n")


async def test_header_firewall_for_anonymous_senders(tmp_path):
    async with running_hub(tmp_path, hub_with(agent(SENDERID, 5, authentication_results=False))) as hub:
        c = await as_client(hub.addresses[0][1], "198.51.100.7")
        await send_raw(c, "x@woodgrovebank.com", ["alice@contoso.com"],
                       make_message(sender="ceo@woodgrovebank.com", extra_headers=FORGED))
        assert await hub.idle(), "the hub did not settle"
        [raw] = messages(hub, "alice@contoso.com")
        assert header_value(raw, "X-MS-Exchange-Organization-SCL") is None
        assert header_value(raw, "X-MS-Exchange-Forest-RulesExecuted") is None
        assert header_value(raw, "X-MS-Exchange-Organization-SenderIdResult") == "Fail"
        assert header_value(raw, "Authentication-Results") == "mx.fabrikam.com; spf=pass smtp.mailfrom=fabrikam.com"


async def test_an_authentication_results_without_an_authserv_id_is_kept(tmp_path):
    """`Authentication-Results: ;` (no authserv-id) once made the header firewall raise: the message got 451 at
    every try and never arrived. It names no one, so it is not ours to remove, and the message is delivered."""
    async with running_hub(tmp_path, hub_with()) as hub:
        c = await as_client(hub.addresses[0][1], "198.51.100.7")
        replies = await send_raw(c, "x@fabrikam.com", ["alice@contoso.com"],
                                 make_message(extra_headers="Authentication-Results: ;\r\nAuthentication-Results:   \r\n"))
        assert replies[-1].startswith("250 2.6.0"), replies
        assert await hub.idle(), "the hub did not settle"
        [raw] = messages(hub, "alice@contoso.com")
        assert header_value(raw, "Authentication-Results") == ";"


async def test_authenticated_senders_keep_organization_headers(tmp_path):
    from hubtools import send
    async with running_hub(tmp_path, hub_with()) as hub:
        await send(hub.addresses[0][1], "alice@contoso.com", ["bob@contoso.com"], make_message(extra_headers=FORGED),
                   login=("alice@contoso.com", "Passw0rd!"))
        assert await hub.idle(), "the hub did not settle"
        [raw] = messages(hub, "bob@contoso.com")
        assert header_value(raw, "X-MS-Exchange-Organization-SCL") == "-1"


async def test_xclient_helo_counts_as_the_greeting(tmp_path):
    """smtplib and swaks may go straight from XCLIENT to MAIL: the HELO name given is checked all the same."""
    async with running_hub(tmp_path, hub_with(agent(REVERSE_DNS, 4))) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1])
        await c.cmd("EHLO tester.local")
        assert (await c.cmd("XCLIENT ADDR=192.0.2.10 HELO=mx.woodgrove.example")).startswith("220")
        replies = await send_raw(c, "x@fabrikam.com", ["alice@contoso.com"], make_message())
        assert replies[-1].startswith("250 2.6.0")
        assert await hub.idle(), "the hub did not settle"
        assert smtp_received(messages(hub, "alice@contoso.com")[0]).startswith(
            "from mx.woodgrove.example ([192.0.2.10] unverified)")
