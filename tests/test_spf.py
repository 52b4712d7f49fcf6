"""agents.senderid beyond the conformance suites: Sender ID scopes, the query log, limits, headers, real DNS."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest

from agents.senderid.pra import find_pra
from agents.senderid.received_spf import EXCHANGE_STATUS, _is_ip, authentication_results, received_spf
from agents.senderid.spf import DOMAIN_DOES_NOT_EXIST, MALFORMED_DOMAIN, NOT_PERMITTED, SpfChecker
from dnsserver import LocalDnsServer
from spfsuite import ZoneResolver
from transport.core.dns import DnsAnswer, DnsResolver, DnsSettings

DEMO_ZONE = Path(__file__).resolve().parents[1] / "examples" / "zones" / "demo.zone"

SENDER_ID_ZONE = {
    "both.example": [{"TXT": "v=spf1 -all"}, {"TXT": "spf2.0/pra +all"}],
    "mfrom-only.example": [{"TXT": "spf2.0/mfrom -all"}, {"TXT": "v=spf1 +all"}],
    "v2-mfrom-no-v1.example": [{"TXT": "spf2.0/mfrom +all"}],
    "two-pra.example": [{"TXT": "spf2.0/pra -all"}, {"TXT": "spf2.0/mfrom,pra -all"}],
    "prattle.example": [{"TXT": "spf2.0/prattle +all"}, {"TXT": "v=spf1 -all"}],
    "mixed-case.example": [{"TXT": "SPF2.0/MFrom,PRA ip4:192.0.2.1 -all"}],
    "nospf.example": [{"A": "192.0.2.1"}],
}


def checker(zone: dict, **options: object) -> SpfChecker:
    return SpfChecker(ZoneResolver(zone), **options)  # type: ignore[arg-type]


class TestSenderIdScopes:
    async def test_pra_domain_that_does_not_exist_fails(self) -> None:
        result = await checker(SENDER_ID_ZONE).check_pra("192.0.2.1", "a@missing.example")
        assert (result.result, result.fail_reason) == ("fail", DOMAIN_DOES_NOT_EXIST)
        mfrom = await checker(SENDER_ID_ZONE).check_host("192.0.2.1", "missing.example", "a@missing.example",
                                                         scope="mfrom")
        assert mfrom.result == "none"

    @pytest.mark.parametrize("pra", ["a@localhost", "a@[192.0.2.1]", "a@bad..example", "a@" + "x" * 64 + ".example"])
    async def test_malformed_pra_domain_fails(self, pra: str) -> None:
        result = await checker(SENDER_ID_ZONE).check_pra("192.0.2.1", pra)
        assert (result.result, result.fail_reason, result.queries) == ("fail", MALFORMED_DOMAIN, ())

    @pytest.mark.parametrize(("domain", "pra", "mfrom", "spf"), [
        ("both.example", "pass", "fail", "fail"),  # spf2.0/pra preferred for pra; v=spf1 for the rest
        ("mfrom-only.example", "pass", "fail", "pass"),  # RFC 4406 §4.4: v=spf1 applies to the uncovered pra scope
        ("v2-mfrom-no-v1.example", "none", "pass", "none"),
        ("two-pra.example", "permerror", "fail", "none"),
        ("prattle.example", "fail", "fail", "fail"),  # scopes match as whole tokens only
        ("mixed-case.example", "pass", "pass", "none"),
        ("nospf.example", "none", "none", "none"),
    ])
    async def test_record_selection_per_scope(self, domain: str, pra: str, mfrom: str, spf: str) -> None:
        check = checker(SENDER_ID_ZONE)
        found = [(await check.check_host("192.0.2.1", domain, "a@" + domain, scope=scope)).result
                 for scope in ("pra", "mfrom", "spf")]
        assert found == [pra, mfrom, spf]

    async def test_pra_may_be_a_bare_domain_as_in_test_senderid(self) -> None:
        zone = {"x.example": [{"TXT": "spf2.0/pra exists:%{l}.%{o} -all"}],
                "postmaster.x.example": [{"A": "127.0.0.2"}]}
        assert (await checker(zone).check_pra("192.0.2.1", "x.example")).result == "pass"

    async def test_fail_is_not_permitted_with_explanation(self) -> None:
        result = await checker(SENDER_ID_ZONE).check_pra("192.0.2.9", "a@mixed-case.example", "helo.example")
        assert (result.result, result.fail_reason) == ("fail", NOT_PERMITTED)
        assert result.explanation == "mixed-case.example does not designate 192.0.2.9 as a permitted sender"
        assert result.mechanism == "-all" and result.record == "SPF2.0/MFrom,PRA ip4:192.0.2.1 -all"


LIMITS_ZONE = {
    "six.example": [{"TXT": "v=spf1 mx -all"}, {"MX": [10, "h1.six.example"]}, {"MX": [20, "h2.six.example"]},
                    {"MX": [30, "h3.six.example"]}],
    "h1.six.example": [{"A": "192.0.2.1"}],
    "h2.six.example": [{"A": "192.0.2.2"}],
    "h3.six.example": [{"A": "192.0.2.3"}, {"AAAA": "2001:db8::3"}],
    "inc.example": [{"TXT": "v=spf1 include:_spf.inc.example redirect=other.example"}],
    "_spf.inc.example": [{"TXT": "v=spf1 a:gone.inc.example ip4:192.0.2.7 -all"}],
    "other.example": [{"TXT": "v=spf1 -all exp=why.other.example"}],
    "why.other.example": [{"TXT": "%{d} rejects %{i} (seen by %{r})"}],
    "err.example": [{"TXT": "v=spf1 include:timeout.example -all"}],
    "timeout.example": ["TIMEOUT"],
}


class TestEvaluation:
    async def test_void_lookups_are_counted_per_term(self) -> None:
        # An IPv6 client: the MX hosts h1 and h2 have no AAAA, yet the one "mx" term is at most one void lookup.
        result = await checker(LIMITS_ZONE).check_host("2001:db8::3", "six.example", "a@six.example")
        assert (result.result, result.mechanism) == ("pass", "mx")
        # The MX query itself answered, so nothing was void, even with a limit of zero.
        strict = checker(LIMITS_ZONE, max_void_lookups=0)
        assert (await strict.check_host("2001:db8::9", "six.example", "a@six.example")).result == "fail"

    async def test_query_log_and_deciding_terms(self) -> None:
        check = checker(LIMITS_ZONE, receiver="mx.contoso.com")
        result = await check.check_host("192.0.2.7", "inc.example", "a@inc.example")
        assert (result.result, result.mechanism, result.domain) == ("pass", "include:_spf.inc.example", "inc.example")
        assert [(q.name, q.rdtype, q.outcome) for q in result.queries] == [
            ("inc.example", "TXT", "NOERROR (1)"),
            ("_spf.inc.example", "TXT", "NOERROR (1)"),
            ("gone.inc.example", "A", "NXDOMAIN"),
        ]
        failed = await check.check_host("192.0.2.8", "inc.example", "a@inc.example")
        assert (failed.result, failed.mechanism) == ("fail", "redirect=other.example")
        assert failed.explanation == "other.example rejects 192.0.2.8 (seen by mx.contoso.com)"

    async def test_temp_error_is_logged_and_reported(self) -> None:
        result = await checker(LIMITS_ZONE).check_host("192.0.2.1", "err.example", "a@err.example")
        assert result.result == "temperror" and "timeout" in (result.problem or "")
        assert result.queries[-1].outcome == "TEMPERROR (timeout)"

    async def test_default_explanation_macros(self) -> None:
        zone = {"deny.example": [{"TXT": "v=spf1 -all"}]}
        check = checker(zone, receiver="hub.contoso.com", default_explanation="See %{r} about %{S} from %{c}")
        result = await check.check_mail_from("2001:DB8::1", "Joe Bloggs@deny.example", "helo.example")
        assert result.explanation == "See hub.contoso.com about Joe%20Bloggs%40deny.example from 2001:db8::1"

    async def test_evaluation_deadline_gives_temperror(self) -> None:
        class SlowResolver(ZoneResolver):
            async def lookup(self, name: str, rdtype: str) -> DnsAnswer:
                await asyncio.sleep(0.02)
                return await super().lookup(name, rdtype)

        zone = {"slow.example": [{"TXT": "v=spf1 a:a1.slow.example a:a2.slow.example a:a3.slow.example -all"}],
                "a1.slow.example": [{"A": "192.0.2.1"}], "a2.slow.example": [{"A": "192.0.2.2"}],
                "a3.slow.example": [{"A": "192.0.2.3"}]}
        check = SpfChecker(SlowResolver(zone), timeout=0.03)
        result = await check.check_host("192.0.2.3", "slow.example", "a@slow.example")
        assert (result.result, result.problem) == ("temperror", "the SPF evaluation took too long")


class TestWithDnsResolver:
    async def test_demo_zone_statuses(self) -> None:
        check = SpfChecker(DnsResolver(DnsSettings(zone_files=[DEMO_ZONE], use_network=False)), receiver="hub")
        outcomes = {pra: (await check.check_pra("127.0.0.1", pra, "localhost")).result for pra in (
            "a@contoso.com", "a@fabrikam.com", "a@woodgrovebank.com", "a@softfail.example", "a@neutral.example",
            "a@permerror.example", "a@nowhere.example")}
        assert outcomes == {
            "a@contoso.com": "pass", "a@fabrikam.com": "pass", "a@woodgrovebank.com": "fail",
            "a@softfail.example": "softfail", "a@neutral.example": "neutral", "a@permerror.example": "permerror",
            "a@nowhere.example": "fail"}
        spoofed = await check.check_pra("192.0.2.99", "ceo@contoso.com")
        assert spoofed.result == "fail"
        partner = await check.check_host("192.0.2.10", "fabrikam.com", "a@fabrikam.com")
        assert partner.result == "pass"

    async def test_servfail_over_the_network_is_temperror(self) -> None:
        records = {"ok.example": {"TXT": ['"v=spf1 exists:%{l}.users.ok.example -all"']},
                   "joe.users.ok.example": {"A": ["127.0.0.2"]}}
        async with LocalDnsServer(records, failures={"ann.users.ok.example": "servfail"}) as server:
            check = SpfChecker(DnsResolver(server.settings(timeout=1.0)))
            assert (await check.check_host("192.0.2.1", "ok.example", "joe@ok.example")).result == "pass"
            assert (await check.check_host("192.0.2.1", "ok.example", "bob@ok.example")).result == "fail"
            broken = await check.check_host("192.0.2.1", "ok.example", "ann@ok.example")
            assert broken.result == "temperror" and broken.queries[-1].outcome == "TEMPERROR (servfail)"

    async def test_a_name_the_resolver_cannot_query_is_no_such_host(self) -> None:
        """`x\\9` expands into a name dnspython refuses (a bad escape): the resolver's DnsNameError reaches the
        engine, which counts it as NXDOMAIN, so the term does not match and the check goes on to the next."""
        records = {"ok.example": {"TXT": ['"v=spf1 exists:%{l}.users.ok.example ?all"']}}
        async with LocalDnsServer(records) as server:
            check = SpfChecker(DnsResolver(server.settings(timeout=1.0)))
            result = await check.check_host("192.0.2.1", "ok.example", "x\\9@ok.example")
        assert result.result == "neutral"
        assert [(q.name, q.outcome) for q in result.queries][-1] == ("x\\9.users.ok.example", "NXDOMAIN")
        assert ("x\\9.users.ok.example", "A") not in server.queries  # refused before anything was sent


class TestHeaders:
    def test_received_spf_per_status(self) -> None:
        common = {"receiver": "hub.contoso.com", "client_ip": "192.0.2.9", "helo": "mail.fabrikam.com"}
        assert received_spf("fail", pra="joe@fabrikam.com", **common) == (
            "Fail (hub.contoso.com: domain of joe@fabrikam.com does not designate 192.0.2.9 as permitted sender)"
            " receiver=hub.contoso.com; client-ip=192.0.2.9; helo=mail.fabrikam.com;")
        assert received_spf("pass", pra="joe@fabrikam.com", **common).startswith(
            "Pass (hub.contoso.com: domain of joe@fabrikam.com designates 192.0.2.9 as permitted sender)")
        assert received_spf("softfail", pra="a@b.example", **common).startswith("SoftFail (")
        assert received_spf("fail", pra="a@gone.example", fail_reason=DOMAIN_DOES_NOT_EXIST, **common).startswith(
            "Fail (hub.contoso.com: domain of a@gone.example does not exist)")
        assert "no purported responsible address" in received_spf("fail", pra=None, **common)
        for status in ("neutral", "none", "temperror", "permerror"):
            assert received_spf(status, pra="a@b.example", **common).startswith(EXCHANGE_STATUS[status] + " (hub.")

    def test_received_spf_sanitises_sender_data(self) -> None:
        value = received_spf("neutral", receiver="hub", client_ip="2001:db8::1", helo='evil"\r\nX-Injected: 1;',
                             pra="a(b)@c.example")
        assert "\r" not in value and "\n" not in value
        assert 'helo="evil\\"X-Injected: 1;";' in value and "a\\(b\\)@c.example" in value
        assert "client-ip=2001:db8::1;" in value

    def test_authentication_results(self) -> None:
        pra = find_pra([("From", "Joe <joe@fabrikam.com>")])
        assert authentication_results("hub.contoso.com", sender_id="pass", pra=pra, spf="pass",
                                      mail_from="bounce@fabrikam.com") == (
            "hub.contoso.com; sender-id=pass header.from=joe@fabrikam.com; spf=pass smtp.mailfrom=bounce@fabrikam.com")
        assert authentication_results("hub", spf="none", helo="mail.example") == "hub; spf=none smtp.helo=mail.example"
        no_pra = find_pra([("To", "x@y.example")])
        assert authentication_results("hub", sender_id="fail", pra=no_pra) == (
            'hub; sender-id=fail reason="no Resent-Sender, Resent-From, Sender or From field"')
        assert authentication_results("hub") == "hub; none"


@pytest.mark.parametrize("text", [
    "192.0.2.1", "[192.0.2.1]", "2001:db8::1", "::ffff:192.0.2.1", "fe80::1%eth0", "1.2.3", "01.2.3.4", "1.2.3.4.",
    "hub.contoso.com", "².2.3.4", "١.٢.٣.٤", "12345", "", ".", "a@b.example",
])
def test_the_ip_shortcut_agrees_with_ipaddress(text: str) -> None:
    try:
        ipaddress.ip_address(text)
        expected = True
    except ValueError:
        expected = False
    assert _is_ip(text) is expected
