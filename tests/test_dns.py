"""transport.core.dns: the zone overlay, the cache, and the real dnspython path against a local DNS server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dnsserver import LocalDnsServer
from transport.core.dns import DnsAnswer, DnsError, DnsNameError, DnsResolver, DnsSettings, DnsTempError

EXAMPLE_ZONE = """\
$ORIGIN example.com.
$TTL 3600
@           IN SOA ns.example.com. hostmaster.example.com. 1 3600 600 86400 120
@           IN TXT "v=spf1 ip4:192.0.2.0/24" " -all"
@           IN TXT "unrelated"
@           IN MX  10 mail
@           IN MX  20 mail2.example.net.
mail    300 IN A   192.0.2.25
mail        IN AAAA 2001:db8::25
www         IN CNAME mail
loop1       IN CNAME loop2
loop2       IN CNAME loop1
away        IN CNAME host.elsewhere.test.
a.b         IN A   192.0.2.99
"""

CATCH_ALL_ZONE = """\
$ORIGIN .
$TTL 600
fabrikam.test.          IN TXT "v=spf1 ip4:198.51.100.7 -all"
mail.fabrikam.test.     IN A   198.51.100.7
7.100.51.198.in-addr.arpa. IN PTR mail.fabrikam.test.
example.com.            IN A   203.0.113.1
"""


@pytest.fixture
def zone_files(tmp_path: Path) -> list[Path]:
    example = tmp_path / "example.zone"
    example.write_text(EXAMPLE_ZONE)
    catch_all = tmp_path / "all.zone"
    catch_all.write_text(CATCH_ALL_ZONE)
    return [catch_all, example]


@pytest.fixture
def offline(zone_files: list[Path]) -> DnsResolver:
    return DnsResolver(DnsSettings(zone_files=zone_files, use_network=False))


class TestZoneOverlay:
    async def test_records_come_back_as_plain_values(self, offline: DnsResolver) -> None:
        txt = await offline.lookup("example.com", "TXT")
        assert txt.rcode == "NOERROR"
        assert sorted(txt.records) == [(b"unrelated",), (b"v=spf1 ip4:192.0.2.0/24", b" -all")]
        mx = await offline.lookup("example.com", "MX")
        assert sorted(mx.records) == [(10, "mail.example.com"), (20, "mail2.example.net")]
        assert (await offline.lookup("mail.example.com", "AAAA")).records == ("2001:db8::25",)
        ptr = await offline.lookup("7.100.51.198.in-addr.arpa", "PTR")
        assert ptr.records == ("mail.fabrikam.test",)

    async def test_names_are_case_insensitive_and_trailing_dot_optional(self, offline: DnsResolver) -> None:
        answer = await offline.lookup("MAIL.Example.COM.", "a")
        assert answer == DnsAnswer("mail.example.com", "A", "NOERROR", ("192.0.2.25",), 300)

    async def test_each_answer_is_made_once_per_name_and_type(self, offline: DnsResolver) -> None:
        first = await offline.lookup("mail.example.com", "A")
        assert await offline.lookup("mail.example.com", "A") is first
        assert await offline.lookup("nope.example.com", "A") is await offline.lookup("nope.example.com", "A")
        other = await offline.lookup("MAIL.example.com", "a")  # asked otherwise: its own entry, the same answer
        assert other == first and other is not first
        assert offline.queries == 5

    async def test_missing_name_in_zone_is_nxdomain_with_soa_minimum(self, offline: DnsResolver) -> None:
        answer = await offline.lookup("nope.example.com", "A")
        assert (answer.rcode, answer.records, answer.ttl) == ("NXDOMAIN", (), 120)

    async def test_name_with_other_types_only_is_nodata(self, offline: DnsResolver) -> None:
        assert (await offline.lookup("mail.example.com", "TXT")).rcode == "NODATA"

    async def test_empty_non_terminal_is_nodata(self, offline: DnsResolver) -> None:
        assert (await offline.lookup("b.example.com", "A")).rcode == "NODATA"
        assert (await offline.lookup("a.b.example.com", "A")).records == ("192.0.2.99",)

    async def test_origin_dot_file_covers_every_name(self, offline: DnsResolver) -> None:
        assert (await offline.lookup("fabrikam.test", "TXT")).records == ((b"v=spf1 ip4:198.51.100.7 -all",),)
        assert (await offline.lookup("unknown.invalid", "TXT")).rcode == "NXDOMAIN"

    async def test_most_specific_zone_wins(self, offline: DnsResolver) -> None:
        # example.com has an A record in the catch-all file, but the example.com zone is authoritative.
        assert (await offline.lookup("example.com", "A")).rcode == "NODATA"

    async def test_cname_is_followed_with_the_smallest_ttl(self, offline: DnsResolver) -> None:
        answer = await offline.lookup("www.example.com", "A")
        assert answer == DnsAnswer("www.example.com", "A", "NOERROR", ("192.0.2.25",), 300)
        assert (await offline.lookup("www.example.com", "CNAME")).records == ("mail.example.com",)

    async def test_cname_loop_is_nxdomain(self, offline: DnsResolver) -> None:
        assert (await offline.lookup("loop1.example.com", "A")).rcode == "NXDOMAIN"

    async def test_no_network_for_uncovered_names_is_temp_error(self, tmp_path: Path) -> None:
        only_example = tmp_path / "example.zone"
        only_example.write_text(EXAMPLE_ZONE)
        resolver = DnsResolver(DnsSettings(zone_files=[only_example], use_network=False))
        with pytest.raises(DnsTempError) as caught:
            await resolver.lookup("fabrikam.test", "TXT")
        assert caught.value.reason == "no DNS servers"
        with pytest.raises(DnsTempError):  # a CNAME leaving the overlay needs the network too
            await resolver.lookup("away.example.com", "A")
        assert resolver.queries == 2 and resolver.network_queries == 0

    async def test_unqueryable_names_raise_name_error(self, offline: DnsResolver) -> None:
        for bad in ("x" * 64 + ".example.com", "a..example.com", "bücher.example"):
            with pytest.raises(DnsNameError):
                await offline.lookup(bad, "A")

    def test_broken_zone_file_names_the_file(self, tmp_path: Path) -> None:
        broken = tmp_path / "broken.zone"
        broken.write_text("$ORIGIN example.com.\n@ IN A not-an-address\n")
        with pytest.raises(DnsError, match="broken.zone"):
            DnsResolver(DnsSettings(zone_files=[broken], use_network=False))


SERVER_RECORDS = {
    "example.com": {"A": ["192.0.2.1"], "TXT": ['"v=spf1 " "-all"'], "MX": ["10 mail.example.com."]},
    "alias.example.com": {"CNAME": ["example.com."]},
    "host.elsewhere.test": {"A": ["198.51.100.9"]},
}
SERVER_FAILURES = {"broken.example": "servfail", "refusing.example": "refused", "slow.example": "timeout"}


class TestNetwork:
    async def test_answers_nxdomain_and_nodata(self) -> None:
        async with LocalDnsServer(SERVER_RECORDS) as server:
            resolver = DnsResolver(server.settings(cache=False))
            assert (await resolver.lookup("example.com", "A")).records == ("192.0.2.1",)
            assert (await resolver.lookup("example.com", "TXT")).records == ((b"v=spf1 ", b"-all"),)
            assert (await resolver.lookup("example.com", "MX")).records == ((10, "mail.example.com"),)
            assert (await resolver.lookup("missing.example.com", "A")).rcode == "NXDOMAIN"
            nodata = await resolver.lookup("example.com", "AAAA")
            assert (nodata.rcode, nodata.records, nodata.ttl) == ("NODATA", (), 60)
            alias = await resolver.lookup("alias.example.com", "A")
            assert (alias.name, alias.records) == ("alias.example.com", ("192.0.2.1",))
            assert resolver.network_queries == 6

    async def test_timeout_is_temp_error_within_the_bound(self) -> None:
        async with LocalDnsServer(failures=SERVER_FAILURES) as server:
            resolver = DnsResolver(server.settings(timeout=0.3))
            with pytest.raises(DnsTempError) as caught:  # the guard only stops a hang; the timeout is the resolver's
                await asyncio.wait_for(resolver.lookup("slow.example", "TXT"), 30)
            assert caught.value.reason == "timeout"

    async def test_servfail_and_refused_are_temp_errors_not_nxdomain(self) -> None:
        async with LocalDnsServer(failures=SERVER_FAILURES) as server:
            resolver = DnsResolver(server.settings())
            for name, reason in (("broken.example", "servfail"), ("refusing.example", "refused")):
                with pytest.raises(DnsTempError) as caught:
                    await resolver.lookup(name, "TXT")
                assert caught.value.reason == reason
            assert (await resolver.lookup("missing.example", "TXT")).rcode == "NXDOMAIN"

    async def test_zone_cname_to_an_outside_name_asks_the_server(self, zone_files: list[Path]) -> None:
        example_only = [path for path in zone_files if path.name == "example.zone"]
        async with LocalDnsServer(SERVER_RECORDS) as server:
            resolver = DnsResolver(server.settings(zone_files=example_only))
            answer = await resolver.lookup("away.example.com", "A")
            assert (answer.name, answer.records) == ("away.example.com", ("198.51.100.9",))
            assert server.queries == [("host.elsewhere.test", "A")]
            await resolver.lookup("mail.example.com", "A")  # covered by a zone: never sent
            assert len(server.queries) == 1


class TestCache:
    async def test_positive_and_negative_answers_live_for_their_ttl(self) -> None:
        now = [1000.0]
        async with LocalDnsServer(SERVER_RECORDS, ttl=300, negative_ttl=60) as server:
            resolver = DnsResolver(server.settings(), clock=lambda: now[0])
            for _ in range(3):
                await resolver.lookup("example.com", "A")
                await resolver.lookup("missing.example.com", "A")
            assert len(server.queries) == 2
            now[0] += 61  # the negative answer expired, the positive one did not
            await resolver.lookup("example.com", "A")
            assert (await resolver.lookup("missing.example.com", "A")).rcode == "NXDOMAIN"
            assert server.queries[-1] == ("missing.example.com", "A") and len(server.queries) == 3
            now[0] += 240
            await resolver.lookup("EXAMPLE.com.", "A")
            assert len(server.queries) == 4
            assert resolver.queries == 9 and resolver.network_queries == 4

    async def test_temp_errors_are_not_cached(self) -> None:
        async with LocalDnsServer(failures=SERVER_FAILURES) as server:
            resolver = DnsResolver(server.settings())
            for _ in range(2):
                with pytest.raises(DnsTempError):
                    await resolver.lookup("broken.example", "A")
            assert len(server.queries) == 2

    async def test_cache_is_bounded(self) -> None:
        records = {f"h{i}.example": {"A": [f"192.0.2.{i}"]} for i in range(5)}
        async with LocalDnsServer(records) as server:
            resolver = DnsResolver(server.settings(cache_size=3))
            for i in range(5):
                await resolver.lookup(f"h{i}.example", "A")
            await resolver.lookup("h4.example", "A")  # still cached
            await resolver.lookup("h0.example", "A")  # evicted first
            assert len(server.queries) == 6

    async def test_cache_off(self) -> None:
        async with LocalDnsServer(SERVER_RECORDS) as server:
            resolver = DnsResolver(server.settings(cache=False))
            await resolver.lookup("example.com", "A")
            await resolver.lookup("example.com", "A")
            assert len(server.queries) == 2


def test_settings_reject_unknown_keys() -> None:
    with pytest.raises(ValueError):
        DnsSettings.model_validate({"nameserver": ["192.0.2.53"]})
