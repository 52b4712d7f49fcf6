"""What the README's Sender ID section promises and no other test checked: replies, TempError actions, the
bypasses, the result cache's exception for TempErrors, the counters and `senderid test --sender ''`, over real
SMTP with the demo zones or a real DNS server on loopback."""

from __future__ import annotations

import json

from agents.senderid.agent import COUNTERS
from dnsserver import LocalDnsServer
from hubtools import REPO, agent, header_value, make_message, messages, run_cli, running_hub, send, tracking

ZONE = str(REPO / "examples" / "zones" / "demo.zone")
SENDERID = "agents.senderid:SenderIdAgent"


def demo(**config) -> dict:
    return {"dns": {"zone_files": [ZONE], "use_network": False}, "agents": [agent(SENDERID, **config)]}


def local_dns(dns: LocalDnsServer, **config) -> dict:
    return {"dns": {"nameservers": ["127.0.0.1"], "port": dns.port, "timeout": 0.5, "use_network": True},
            "agents": [agent(SENDERID, **config)]}


async def test_a_malformed_pra_domain_is_rejected_with_exchange_reply(tmp_path):
    """README: "`Reject` (`550 5.7.1 Sender ID (PRA) Not Permitted - <explanation>`, `… Malformed Domain`, …)"."""
    async with running_hub(tmp_path, demo(spoofed_domain_action="Reject")) as hub:
        _, reply = await send(hub.addresses[0][1], "x@fabrikam.com", ["alice@contoso.com"],
                              make_message(sender="john@localhost", message_id="<mal@t>"))
        assert reply == (550, b"5.7.1 Sender ID (PRA) Malformed Domain")
        assert await hub.idle(), "the hub did not settle"
        assert messages(hub, "alice@contoso.com") == []
        assert hub.counters.get(COUNTERS, "Messages Validated with a Fail - Malformed Domain Result") == 1


async def test_temp_error_action_delete_answers_250_delivers_nothing_and_tracks_it(tmp_path):
    """README: "`temp_error_action` for TempError … or `Delete` (the client is told the message was queued)"; "a DNS
    timeout or SERVFAIL is TempError"."""
    async with LocalDnsServer({}, failures={"broken.example": "servfail"}) as dns:
        async with running_hub(tmp_path, local_dns(dns, temp_error_action="Delete")) as hub:
            _, reply = await send(hub.addresses[0][1], "x@broken.example", ["alice@contoso.com"],
                                  make_message(sender="x@broken.example", message_id="<tmp@t>"))
            assert reply[0] == 250 and reply[1].startswith(b"2.6.0 <tmp@t>") and b"Queued mail for delivery" in reply[1]
            assert await hub.idle(), "the hub did not settle"
            assert ("broken.example", "TXT") in dns.queries
            assert messages(hub, "alice@contoso.com") == [] and hub.store.items() == []
            rows = [r for r in tracking(hub) if r["message-id"] == "<tmp@t>"]
            assert [r["event-id"] for r in rows] == ["AGENTINFO"]
            assert rows[0]["custom-data"].startswith("Sender Id Agent: deleted Sender ID TempError for x@broken.example")
            assert hub.counters.get(COUNTERS, "Messages Validated with a TempError Result") == 1


async def test_mail_for_bypassed_recipients_only_is_not_checked(tmp_path):
    """README: "Authenticated sessions bypass it …, as do messages whose recipients are all in
    `bypassed_recipients`"."""
    extra = demo(spoofed_domain_action="Reject", bypassed_recipients=["alice@contoso.com", "bob@contoso.com"])
    async with running_hub(tmp_path, extra) as hub:
        _, reply = await send(hub.addresses[0][1], "x@fabrikam.com", ["alice@contoso.com", "bob@contoso.com"],
                              make_message(sender="ceo@woodgrovebank.com", message_id="<allbyp@t>"))
        assert reply[0] == 250
        assert await hub.idle(), "the hub did not settle"
        for who in ("alice", "bob"):
            [raw] = messages(hub, f"{who}@contoso.com")
            assert header_value(raw, "X-MS-Exchange-Organization-SenderIdResult") is None
            assert header_value(raw, "Received-SPF") is None
        assert hub.counters.get(COUNTERS, "Messages That Bypassed Validation") == 1
        assert hub.counters.get(COUNTERS, "Messages Validated") == 0
        assert hub.counters.get(COUNTERS, "DNS Queries") == 0


async def test_bypassed_sender_domains_are_stamped_prd_and_not_checked(tmp_path):
    """README: "Stamped as `X-MS-Exchange-Organization-PRD: <domain>`; `bypassed_sender_domains` stop here"."""
    extra = demo(spoofed_domain_action="Reject", bypassed_sender_domains=["WoodgroveBank.com"])
    async with running_hub(tmp_path, extra) as hub:
        _, reply = await send(hub.addresses[0][1], "x@fabrikam.com", ["alice@contoso.com"],
                              make_message(sender="ceo@woodgrovebank.com", message_id="<bsd@t>"))
        assert reply[0] == 250  # a Fail would have been rejected
        assert await hub.idle(), "the hub did not settle"
        [raw] = messages(hub, "alice@contoso.com")
        assert header_value(raw, "X-MS-Exchange-Organization-PRD") == "woodgrovebank.com"
        assert header_value(raw, "X-MS-Exchange-Organization-SenderIdResult") is None
        assert hub.counters.get(COUNTERS, "Messages That Bypassed Validation") == 1
        assert hub.counters.get(COUNTERS, "DNS Queries") == 0


async def test_temp_errors_are_never_reused_from_the_result_cache(tmp_path):
    """README: "Results are reused for the same PRA domain and IP for `result_cache_seconds` (60 …); TempErrors are
    never reused"."""
    async with LocalDnsServer({}, failures={"broken.example": "servfail"}) as dns:
        async with running_hub(tmp_path, local_dns(dns, result_cache_seconds=60)) as hub:
            asked = []
            for n in range(2):
                _, reply = await send(hub.addresses[0][1], "x@broken.example", ["alice@contoso.com"],
                                      make_message(sender="x@broken.example", message_id=f"<te{n}@t>"))
                assert reply[0] == 250  # temp_error_action StampStatus: delivered, stamped TempError
                asked.append(dns.queries.count(("broken.example", "TXT")))
            assert asked[0] >= 1 and asked[1] == 2 * asked[0]
            assert hub.counters.get(COUNTERS, "Messages Validated with a TempError Result") == 2
            assert await hub.idle(), "the hub did not settle"
            raws = messages(hub, "alice@contoso.com")
            assert [header_value(r, "X-MS-Exchange-Organization-SenderIdResult") for r in raws] == ["TempError"] * 2


async def test_softfail_neutral_permerror_and_none_are_stamped_and_counted(tmp_path):
    """README: "`softfail.example`, `neutral.example` and `permerror.example` give their names"; counters "Messages
    Validated with a Pass / Neutral / SoftFail / … / None / TempError / PermError Result"."""
    cases = {"softfail.example": "SoftFail", "neutral.example": "Neutral", "permerror.example": "PermError",
             "mail.fabrikam.com": "None"}  # mail.fabrikam.com exists (an A record) and publishes no record
    async with running_hub(tmp_path, demo()) as hub:
        for n, domain in enumerate(cases):
            _, reply = await send(hub.addresses[0][1], f"x@{domain}", ["alice@contoso.com"],
                                  make_message(sender=f"x@{domain}", message_id=f"<{n}@{domain}>"))
            assert reply[0] == 250
        assert await hub.idle(), "the hub did not settle"
        stamped = {header_value(r, "X-MS-Exchange-Organization-PRD"): header_value(
            r, "X-MS-Exchange-Organization-SenderIdResult") for r in messages(hub, "alice@contoso.com")}
        assert stamped == cases
        for status in cases.values():
            assert hub.counters.get(COUNTERS, f"Messages Validated with a {status} Result") == 1, status
        assert hub.counters.get(COUNTERS, "Messages Validated") == 4


def test_senderid_test_with_a_null_sender_checks_the_helo_identity(tmp_path):
    """README: "`--sender ''` checks the HELO identity (give `--helo`)"."""
    config = str(tmp_path / "none.yaml")  # missing: defaults
    args = ("senderid", "test", "--sender", "", "--helo", "fabrikam.com", "--zone", ZONE, "--json", "-c", config)
    passed = run_cli(*args[:2], "--ip", "127.0.0.1", *args[2:])
    assert passed.returncode == 0, passed.stderr
    out = json.loads(passed.stdout)
    assert (out["result"], out["domain"], out["mechanism"]) == ("pass", "fabrikam.com", "ip4:127.0.0.1")
    assert [q["name"] for q in out["queries"]] == ["fabrikam.com"]
    failed = json.loads(run_cli(*args[:2], "--ip", "203.0.113.9", *args[2:]).stdout)
    assert (failed["result"], failed["domain"]) == ("fail", "fabrikam.com")
    missing = run_cli("senderid", "test", "--ip", "127.0.0.1", "--sender", "", "--zone", ZONE, "-c", config)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "--sender '' checks the HELO identity: give --helo NAME" in missing.stderr
