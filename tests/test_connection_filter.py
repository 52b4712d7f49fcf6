"""The Connection Filtering agent over real SMTP with XCLIENT: IP lists, DNS list providers, replies, counters."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agents.connection_filter import COUNTERS, ListProvider, query_name
from dnsserver import LocalDnsServer
from filtertools import SENDERID, as_client, connection_filter, hub_with, send_raw
from hubtools import REPO, agent, header_value, make_message, messages, run_cli, running_hub, write_config

STATIC = "550 5.7.1 External client with IP address {} does not have permissions to submit to this server."
PROVIDER = "550 5.7.1 Recipient not authorized, your IP has been found on a block list"
TEST_POINTS = REPO.parent / "shared" / "testsuites" / "dnsbl" / "test-points.json"


def zone(tmp_path: Path, records: str) -> str:
    path = tmp_path / "lists.zone"
    path.write_text("$ORIGIN .\n$TTL 60\n" + records)
    return str(path)


@pytest.mark.parametrize("entry, ip", [
    ("192.0.2.66", "192.0.2.66"),
    ("192.0.2.60-192.0.2.70", "192.0.2.66"),
    ("198.51.100.0/24", "198.51.100.200"),
    ("2001:db8::/32", "2001:db8::5"),
])
async def test_ip_block_list_refuses_mail_from_with_exchange_reply(tmp_path, entry, ip):
    async with running_hub(tmp_path, hub_with(connection_filter(ip_block_list=[entry]))) as hub:
        c = await as_client(hub.addresses[0][1], ip)
        assert await c.cmd("MAIL FROM:<x@fabrikam.com>") == STATIC.format(ip)
        assert hub.counters.get(COUNTERS, "Connections on IP Block List") == 1
        # a client outside the entry is not affected
        assert (await c.cmd("XCLIENT ADDR=203.0.113.1")).startswith("220")
        assert (await c.cmd("EHLO x")).startswith("250")
        assert (await c.cmd("MAIL FROM:<x@fabrikam.com>")).startswith("250 2.1.0")


async def test_expired_entries_no_longer_count(tmp_path):
    past = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    future = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    lists = [{"ip_range": "192.0.2.1", "expiration_time": past}, {"ip_range": "192.0.2.2", "expiration_time": future}]
    async with running_hub(tmp_path, hub_with(connection_filter(ip_block_list=lists))) as hub:
        port = hub.addresses[0][1]
        assert (await (await as_client(port, "192.0.2.1")).cmd("MAIL FROM:<x@fabrikam.com>")).startswith("250")
        assert await (await as_client(port, "192.0.2.2")).cmd("MAIL FROM:<x@fabrikam.com>") == STATIC.format("192.0.2.2")


async def test_custom_static_rejection_text(tmp_path):
    cf = connection_filter(ip_block_list=["192.0.2.66"], static_entry_rejection_response="Go away, {0}")
    async with running_hub(tmp_path, hub_with(cf)) as hub:
        c = await as_client(hub.addresses[0][1], "192.0.2.66")
        assert await c.cmd("MAIL FROM:<x@fabrikam.com>") == "550 5.7.1 Go away, 192.0.2.66"


async def test_allow_list_gives_scl_minus_one_and_skips_sender_id(tmp_path):
    cf = connection_filter(ip_allow_list=["192.0.2.0/24"], ip_block_list=["192.0.2.66"])
    async with running_hub(tmp_path, hub_with(cf, agent(SENDERID, 5))) as hub:
        c = await as_client(hub.addresses[0][1], "192.0.2.66")  # on both lists: the allow list wins
        replies = await send_raw(c, "x@woodgrovebank.com", ["alice@contoso.com"],
                                 make_message(sender="ceo@woodgrovebank.com"))
        assert replies[-1].startswith("250 2.6.0"), replies
        assert await hub.idle(), "the hub did not settle"
        [raw] = messages(hub, "alice@contoso.com")
        assert header_value(raw, "X-MS-Exchange-Organization-SCL") == "-1"
        assert header_value(raw, "X-MS-Exchange-Organization-Antispam-Report") == "IPOnAllowList"
        assert header_value(raw, "X-MS-Exchange-Organization-SenderIdResult") is None
        assert hub.counters.get("MSExchange Sender Id Agent", "Messages That Bypassed Validation") == 1
        assert hub.counters.get(COUNTERS, "Connections on IP Allow List") == 1


def provider(name: str, domain: str = "bl.test", **kw) -> dict:
    return {"name": name, "lookup_domain": domain, **kw}


LISTED = "66.2.0.192.bl.test. IN A 127.0.0.2\n66.2.0.192.bl.test. IN A 127.0.0.4\n" \
         "77.2.0.192.bl.test. IN A 127.0.0.10\n"


@pytest.mark.parametrize("rule, ip, blocked", [
    ({}, "192.0.2.66", True),                                          # AnyMatch
    ({}, "192.0.2.1", False),                                          # NXDOMAIN: not listed
    ({"bitmask_match": "0.0.0.4"}, "192.0.2.66", True),                # 127.0.0.4 & 4
    ({"bitmask_match": 1}, "192.0.2.66", False),                       # neither 2 nor 4 has bit 1
    ({"bitmask_match": 2}, "192.0.2.77", True),                        # 10 & 2
    ({"ip_addresses_match": ["127.0.0.4"]}, "192.0.2.66", True),
    ({"ip_addresses_match": ["127.0.0.3"]}, "192.0.2.66", False),
])
async def test_block_list_provider_match_rules(tmp_path, rule, ip, blocked):
    cf = connection_filter(block_list_providers=[provider("Test BL", **rule)])
    async with running_hub(tmp_path, hub_with(cf, zone_files=[zone(tmp_path, LISTED)])) as hub:
        c = await as_client(hub.addresses[0][1], ip)
        replies = await send_raw(c, "x@fabrikam.com", ["alice@contoso.com", "bob@contoso.com"], make_message())
        if blocked:
            assert replies[1:] == [PROVIDER, PROVIDER]  # that RCPT and every later one
            assert hub.counters.get(COUNTERS, "Connections on IP Block List Providers") == 1
        else:
            assert replies[1].startswith("250 2.1.5") and replies[-1].startswith("250 2.6.0")


async def test_priorities_custom_text_and_bypassed_recipients(tmp_path):
    providers = [provider("Second", rejection_response="{0} is on {1} ({2})", priority=2),
                 provider("First", "bl2.test", rejection_response="{1} lists {0} in {2}", priority=1)]
    records = LISTED + "66.2.0.192.bl2.test. IN A 127.0.0.2\n"
    cf = connection_filter(block_list_providers=providers, bypassed_recipients=["postmaster@contoso.com"])
    extra = hub_with(cf, zone_files=[zone(tmp_path, records)])
    extra["mailboxes"] = [{"address": "alice@contoso.com"}, {"address": "postmaster@contoso.com"}]
    async with running_hub(tmp_path, extra) as hub:
        c = await as_client(hub.addresses[0][1], "192.0.2.66")
        replies = await send_raw(c, "x@fabrikam.com", ["postmaster@contoso.com", "alice@contoso.com"], make_message())
        assert replies[1].startswith("250 2.1.5")
        assert replies[2] == "550 5.7.1 First lists 192.0.2.66 in bl2.test"
        assert replies[-1].startswith("250 2.6.0")
        assert await hub.idle(), "the hub did not settle"
        assert len(messages(hub, "postmaster@contoso.com")) == 1


async def test_allow_list_provider_wins_over_block_list_provider(tmp_path):
    records = LISTED + "66.2.0.192.wl.test. IN A 127.0.0.2\n"
    cf = connection_filter(allow_list_providers=[provider("White", "wl.test")], block_list_providers=[provider("Black")])
    async with running_hub(tmp_path, hub_with(cf, zone_files=[zone(tmp_path, records)])) as hub:
        c = await as_client(hub.addresses[0][1], "192.0.2.66")
        replies = await send_raw(c, "x@fabrikam.com", ["alice@contoso.com"], make_message())
        assert replies[-1].startswith("250 2.6.0")
        assert await hub.idle(), "the hub did not settle"
        assert header_value(messages(hub, "alice@contoso.com")[0], "X-MS-Exchange-Organization-SCL") == "-1"
        assert hub.counters.get(COUNTERS, "Connections on IP Allow List Providers") == 1


async def test_a_list_that_never_answers_loses_no_message(tmp_path):
    async with LocalDnsServer({}, failures={"66.2.0.192.slow.test": "timeout"}) as dns:
        extra = hub_with(connection_filter(block_list_providers=[provider("Slow", "slow.test")]))
        extra["dns"] = {"nameservers": ["127.0.0.1"], "port": dns.port, "timeout": 0.5, "use_network": True}
        async with running_hub(tmp_path, extra) as hub:
            c = await as_client(hub.addresses[0][1], "192.0.2.66")
            assert (await c.cmd("MAIL FROM:<x@fabrikam.com>")).startswith("250")
            c.writer.write(b"RCPT TO:<alice@contoso.com>\r\n")
            # the reply comes within the DNS timeout (0.5 s) plus slack, not after a client-side timeout
            assert (await c.reply(timeout=3.0)).startswith("250 2.1.5")
            assert ("66.2.0.192.slow.test", "A") in dns.queries
            assert (await c.cmd("DATA")).startswith("354")
            await c.write(make_message(message_id="<slow@t>") + b".\r\n")
            assert (await c.reply()).startswith("250 2.6.0")
            assert await hub.idle(), "the hub did not settle"
            assert len(messages(hub, "alice@contoso.com")) == 1


async def test_originating_ip_checked_at_end_of_headers_behind_an_internal_server(tmp_path):
    extra = hub_with(connection_filter(ip_block_list=["192.0.2.66"]))
    extra["internal_smtp_servers"] = ["127.0.0.0/8"]
    hop = (b"Received: from evil.example ([192.0.2.66]) by relay.contoso.com ([127.0.0.1]); "
           b"Thu, 26 Nov 2026 10:00:00 +0000\r\n")
    async with running_hub(tmp_path, extra) as hub:
        c = await as_client(hub.addresses[0][1], "127.0.0.2")  # an internal relay: not judged by its own IP
        replies = await send_raw(c, "x@fabrikam.com", ["alice@contoso.com"], hop + make_message())
        assert replies[-1] == STATIC.format("192.0.2.66")
        assert hub.counters.get(COUNTERS, "Messages with Originating IP on IP Block List") == 1


async def test_authenticated_sessions_bypass_the_block_list(tmp_path):
    async with running_hub(tmp_path, hub_with(connection_filter(ip_block_list=["192.0.2.66"]))) as hub:
        c = await as_client(hub.addresses[0][1], "192.0.2.66")
        import base64
        token = base64.b64encode(b"\0alice@contoso.com\0Passw0rd!").decode()
        assert (await c.cmd(f"AUTH PLAIN {token}")).startswith("235")
        assert (await c.cmd("MAIL FROM:<alice@contoso.com>")).startswith("250 2.1.0")


def test_query_names_follow_rfc_5782():
    if not TEST_POINTS.exists():
        pytest.skip(f"{TEST_POINTS} is absent: the shared test suites are not checked out beside the project")
    points = json.loads(TEST_POINTS.read_text())
    import ipaddress
    for family in ("ipv4", "ipv6"):
        ip = ipaddress.ip_address(points[family]["must_be_listed"])
        expected = points[family][f"query_name_for_{points[family]['must_be_listed']}"].replace("<list-zone>", "bl.test")
        assert query_name(ip, "bl.test") == expected


def test_rfc_5782_test_points_with_the_command(tmp_path):
    if not TEST_POINTS.exists():
        pytest.skip(f"{TEST_POINTS} is absent: the shared test suites are not checked out beside the project")
    points = json.loads(TEST_POINTS.read_text())
    records = "".join(f"{points[f]['query_name_for_' + points[f]['must_be_listed']].replace('<list-zone>', 'bl.test')}. "
                      f"IN A 127.0.0.2\n" for f in ("ipv4", "ipv6"))
    cf = connection_filter(block_list_providers=[provider("RFC", bitmask_match="0.0.0.2")])
    cfg = write_config(tmp_path, hub_with(cf, zone_files=[zone(tmp_path, records)]))
    for family in ("ipv4", "ipv6"):
        for key, listed in (("must_be_listed", True), ("must_not_be_listed", False)):
            out = run_cli("connection-filter", "test", "--ip", points[family][key], "--json", "-c", str(cfg))
            assert out.returncode == 0, out.stderr
            [row] = json.loads(out.stdout)["providers"]
            assert row["listed"] is listed, (family, key, row)
    text = run_cli("connection-filter", "test", "--ip", "127.0.0.2", "--provider", "RFC", "-c", str(cfg)).stdout
    assert "Block list provider RFC: listed" in text and "2.0.0.127.bl.test A: NOERROR 127.0.0.2" in text
    bad = run_cli("connection-filter", "test", "--ip", "127.0.0.2", "--provider", "nope", "-c", str(cfg))
    assert bad.returncode == 1 and "no such provider" in bad.stderr and "Traceback" not in bad.stderr


def test_provider_settings_are_validated():
    with pytest.raises(ValueError, match="choose one"):
        ListProvider(name="x", lookup_domain="bl.test", any_match=True, bitmask_match="0.0.0.2")
    assert ListProvider(name="x", lookup_domain="bl.test.", bitmask_match=4).bitmask_match == "0.0.0.4"
