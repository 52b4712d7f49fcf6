"""The Sender ID agent end to end: over SMTP, with the demo zones or a local DNS server, and its command."""

from __future__ import annotations

import json

import pytest

from dnsserver import LocalDnsServer
from hubtools import REPO, agent, header_value, make_message, messages, run_cli, running_hub, send, tracking
from agents.senderid.agent import COUNTERS
from filtertools import as_client, hub_with, send_raw

ZONE = str(REPO / "examples" / "zones" / "demo.zone")
SENDERID = "agents.senderid:SenderIdAgent"


def demo(**config) -> dict:
    return {"dns": {"zone_files": [ZONE], "use_network": False}, "agents": [agent(SENDERID, **config)]}


async def deliver(hub, sender: str, body: bytes, rcpt: str = "alice@contoso.com"):
    port = hub.addresses[0][1]
    return await send(port, sender, [rcpt], body)


async def test_pass_is_stamped_and_delivered(tmp_path):
    async with running_hub(tmp_path, demo()) as hub:
        _, reply = await deliver(hub, "john@fabrikam.com", make_message(sender="john@fabrikam.com"))
        assert reply[0] == 250
        assert await hub.idle(), "the hub did not settle"
        [raw] = messages(hub, "alice@contoso.com")
        assert header_value(raw, "X-MS-Exchange-Organization-SenderIdResult") == "Pass"
        assert header_value(raw, "X-MS-Exchange-Organization-PRD") == "fabrikam.com"
        spf = header_value(raw, "Received-SPF")
        assert spf.startswith("Pass (hub.contoso.com: domain of john@fabrikam.com designates 127.0.0.1 as permitted sender)")
        assert "client-ip=127.0.0.1;" in spf and "helo=client.fabrikam.test;" in spf
        assert header_value(raw, "Authentication-Results") == \
            "hub.contoso.com; sender-id=pass header.from=john@fabrikam.com"
        assert hub.counters.get(COUNTERS, "Messages Validated") == 1
        assert hub.counters.get(COUNTERS, "Messages Validated with a Pass Result") == 1
        assert hub.counters.get(COUNTERS, "DNS Queries") == 1


async def test_fail_rejected_with_exchange_reply_and_explanation(tmp_path):
    async with running_hub(tmp_path, demo(spoofed_domain_action="Reject")) as hub:
        _, reply = await deliver(hub, "x@fabrikam.com", make_message(sender="ceo@woodgrovebank.com"))
        assert reply == (550, b"5.7.1 Sender ID (PRA) Not Permitted - woodgrovebank.com sends no mail; "
                              b"127.0.0.1 is not one of its servers")
        assert await hub.idle(), "the hub did not settle"
        assert messages(hub, "alice@contoso.com") == []
        info = [r for r in tracking(hub) if r["event-id"] == "AGENTINFO"]
        assert info and info[0]["custom-data"].startswith("Sender Id Agent:")
        assert hub.counters.get(COUNTERS, "Messages Validated with a Fail - Not Permitted Result") == 1


async def test_fail_stamped_by_default(tmp_path):
    async with running_hub(tmp_path, demo()) as hub:
        _, reply = await deliver(hub, "x@fabrikam.com", make_message(sender="ceo@woodgrovebank.com"))
        assert reply[0] == 250
        assert await hub.idle(), "the hub did not settle"
        [raw] = messages(hub, "alice@contoso.com")
        assert header_value(raw, "X-MS-Exchange-Organization-SenderIdResult") == "Fail"
        assert header_value(raw, "Received-SPF").startswith("Fail (hub.contoso.com: domain of ceo@woodgrovebank.com does not")


async def test_fail_deleted_gets_fake_250_and_nothing_delivered(tmp_path):
    async with running_hub(tmp_path, demo(spoofed_domain_action="Delete")) as hub:
        _, reply = await deliver(hub, "x@fabrikam.com", make_message(sender="ceo@woodgrovebank.com"))
        assert reply[0] == 250 and b"2.6.0" in reply[1]
        assert await hub.idle(), "the hub did not settle"
        assert messages(hub, "alice@contoso.com") == []


async def test_nonexistent_domain_and_missing_pra(tmp_path):
    async with running_hub(tmp_path, demo(spoofed_domain_action="Reject")) as hub:
        _, reply = await deliver(hub, "x@fabrikam.com", make_message(sender="someone@nosuch.example"))
        assert reply[1].startswith(b"5.7.1 Sender ID (PRA) Domain Does Not Exist")
        no_from = b"To: alice@contoso.com\r\nSubject: anonymous\r\n\r\nbody\r\n"
        _, reply = await deliver(hub, "x@fabrikam.com", no_from)
        assert reply == (550, b"5.7.1 Missing purported responsible address")
        assert hub.counters.get(COUNTERS, "Messages with No PRA") == 1


async def test_bypassed_recipient_keeps_the_message_others_are_failed(tmp_path):
    async with running_hub(tmp_path, demo(spoofed_domain_action="Reject", bypassed_recipients=["bob@contoso.com"])) as hub:
        port = hub.addresses[0][1]
        body = make_message(sender="ceo@woodgrovebank.com", message_id="<byp@t>")
        _, reply = await send(port, "x@fabrikam.com", ["alice@contoso.com", "bob@contoso.com"], body)
        assert reply[0] == 250
        assert await hub.idle(), "the hub did not settle"
        assert len(messages(hub, "bob@contoso.com")) == 1 and messages(hub, "alice@contoso.com") == []
        fails = [r for r in tracking(hub) if r["event-id"] == "FAIL"]
        assert fails[0]["recipient-address"] == "alice@contoso.com"
        assert fails[0]["recipient-status"].startswith("550 5.7.1 Sender ID (PRA) Not Permitted")


async def test_authenticated_sessions_bypass(tmp_path):
    async with running_hub(tmp_path, demo(spoofed_domain_action="Reject")) as hub:
        port = hub.addresses[0][1]
        _, reply = await send(port, "alice@contoso.com", ["bob@contoso.com"], make_message(sender="ceo@woodgrovebank.com"),
                              login=("alice@contoso.com", "Passw0rd!"))
        assert reply[0] == 250
        assert hub.counters.get(COUNTERS, "Messages That Bypassed Validation") == 1


async def test_originating_ip_behind_an_internal_server(tmp_path):
    """127.0.0.1 is an internal relay: the IP checked is the one in the newest Received header not from it."""
    extra = demo()
    extra["internal_smtp_servers"] = ["127.0.0.0/8"]
    hop = "Received: from mail.example ([198.51.100.7]) by relay.contoso.com ([127.0.0.1]); Thu, 26 Nov 2026 10:00:00 +0000\r\n"
    async with running_hub(tmp_path, extra) as hub:
        body = make_message(sender="john@fabrikam.com", extra_headers="")
        await deliver(hub, "john@fabrikam.com", hop.encode() + body)
        assert await hub.idle(), "the hub did not settle"
        [raw] = messages(hub, "alice@contoso.com")
        assert header_value(raw, "X-MS-Exchange-Organization-SenderIdResult") == "Fail"
        assert "client-ip=198.51.100.7;" in header_value(raw, "Received-SPF")
        # without a usable hop there is no originating IP: the message is not validated
        await deliver(hub, "john@fabrikam.com", make_message(sender="john@fabrikam.com", message_id="<noip@t>"))
        assert hub.counters.get(COUNTERS, "Messages Missing Originating IP") == 1


async def test_temperror_from_unanswering_nameserver_is_bounded(tmp_path):
    async with LocalDnsServer({}, failures={"slow.example": "timeout"}) as dns:
        extra = {"dns": {"nameservers": ["127.0.0.1"], "port": dns.port, "timeout": 0.5, "use_network": True},
                 "agents": [agent(SENDERID, temp_error_action="Reject")]}
        async with running_hub(tmp_path, extra) as hub:
            _, reply = await deliver(hub, "x@slow.example", make_message(sender="x@slow.example"))
            assert reply == (450, b"4.4.3 Sender ID check is temporarily unavailable")
            assert ("slow.example", "TXT") in dns.queries
            assert hub.counters.get(COUNTERS, "Messages Validated with a TempError Result") == 1


def test_command_against_a_zone_file(tmp_path):
    zone = tmp_path / "trial.zone"
    zone.write_text("$ORIGIN trial.example.\n$TTL 60\n@ IN TXT \"spf2.0/pra ip4:203.0.113.0/24 -all\"\n"
                    "@ IN TXT \"v=spf1 +all\"\n")
    config = tmp_path / "none.yaml"  # missing: defaults
    out = run_cli("senderid", "test", "--ip", "203.0.113.9", "--sender", "a@trial.example", "--zone", str(zone),
                  "--json", "-c", str(config))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["result"] == "pass" and data["record"] == "spf2.0/pra ip4:203.0.113.0/24 -all"
    assert data["queries"][0]["name"] == "trial.example" and data["queries"][0]["outcome"] == "NOERROR (2)"
    out = run_cli("senderid", "test", "--ip", "198.51.100.1", "--sender", "a@trial.example", "--scope", "spf",
                  "--zone", str(zone), "--json", "-c", str(config))
    assert json.loads(out.stdout)["result"] == "pass"  # plain SPF ignores spf2.0 records: +all
    out = run_cli("senderid", "test", "--ip", "198.51.100.1", "--sender", "a@trial.example", "--zone", str(zone),
                  "-c", str(config))
    assert out.stdout.startswith("Result:      Fail (NotPermitted)")
    out = run_cli("senderid", "test", "--ip", "not-an-ip", "--domain", "trial.example", "--zone", str(zone),
                  "-c", str(config))
    assert out.returncode == 1 and "not-an-ip" in out.stderr and "Traceback" not in out.stderr


async def test_counters_command_reads_what_the_hub_saved(tmp_path):
    async with running_hub(tmp_path, demo()) as hub:
        await deliver(hub, "x@fabrikam.com", make_message(sender="ceo@woodgrovebank.com"))
    out = run_cli("counters", "--json", "-c", str(tmp_path / "transport.yaml"))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)[COUNTERS]
    assert data["Messages Validated"] == 1 and data["Messages Validated with a Fail - Not Permitted Result"] == 1
    text = run_cli("counters", "--set", COUNTERS, "-c", str(tmp_path / "transport.yaml")).stdout
    assert "\\MSExchange Sender Id Agent\\DNS Queries" in text


# DNS Queries after each message; woodgrovebank.com's Fail asks twice (its record, then its exp= text).
@pytest.mark.parametrize("cache_seconds, queries", [(60, [1, 1, 2, 4]), (0, [1, 2, 3, 5])])
async def test_results_are_cached_per_domain_and_ip(tmp_path, cache_seconds, queries):
    """The same domain from the same IP is answered from the cache; another IP, or another domain, is checked."""
    extra = hub_with(agent(SENDERID, result_cache_seconds=cache_seconds))
    async with running_hub(tmp_path, extra) as hub:
        seen = []
        for n, (ip, domain) in enumerate([("127.0.0.1", "fabrikam.com"), ("127.0.0.1", "fabrikam.com"),
                                          ("192.0.2.10", "fabrikam.com"), ("192.0.2.10", "woodgrovebank.com")]):
            client = await as_client(hub.addresses[0][1], ip)
            body = make_message(sender=f"user{n}@{domain}", message_id=f"<c{n}@t>")
            assert (await send_raw(client, f"user{n}@{domain}", ["alice@contoso.com"], body))[-1].startswith("250")
            await client.close()
            seen.append(hub.counters.get(COUNTERS, "DNS Queries"))
        assert seen == queries
        assert await hub.idle(), "the hub did not settle"
        raws = messages(hub, "alice@contoso.com")
        assert sorted(header_value(r, "X-MS-Exchange-Organization-SenderIdResult") for r in raws) == [
            "Fail", "Pass", "Pass", "Pass"]
        assert hub.counters.get(COUNTERS, "Messages Validated") == 4


async def test_the_verdict_is_in_the_tracking_log(tmp_path):
    async with running_hub(tmp_path, demo()) as hub:
        await deliver(hub, "x@fabrikam.com", make_message(sender="ceo@woodgrovebank.com", message_id="<v@t>"))
        assert await hub.idle(), "the hub did not settle"
        info = [r["custom-data"] for r in tracking(hub) if r["event-id"] == "AGENTINFO" and r["message-id"] == "<v@t>"]
        assert info == ["Sender Id Agent: Stamp at on_end_of_headers (Sender ID Fail for ceo@woodgrovebank.com "
                        "from 127.0.0.1)"]
