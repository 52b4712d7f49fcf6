"""The openspf conformance suites (RFC 7208, RFC 4406 mfrom scope, blitiri's extras) against agents.senderid.spf,
through the shipped DnsResolver: once with the scenario's data served by a real DNS server on loopback (dnspython's
network path: NXDOMAIN, NODATA, CNAME chains, SERVFAIL and time-outs as a server sends them), once with it loaded as
zone files into the resolver's overlay (names that must fail stay on the server). Both paths must also give the same
answer to every query the suite makes."""

from __future__ import annotations

import pytest

from pathlib import Path

from agents.senderid.records import Scope
from agents.senderid.spf import SpfChecker, SpfResult
from dnsserver import LocalDnsServer
from spfsuite import SUITES, SuiteCase, load_suite, server_records, write_zone_files
from transport.core.dns import DnsError, DnsResolver

if not SUITES.is_dir():
    pytest.skip(f"SPF test suites not found at {SUITES} (shared/testsuites is laid beside the repository)",
                allow_module_level=True)

_SINGLE_LABEL = "the sender domain has a single label, which RFC 7208 §4.3 does not check (result none)"

#: Tests whose expectation we deliberately do not share, with the reason.
DISAGREE = {
    **{f"blitirispf-tests:{name}": _SINGLE_LABEL for name in (
        "mx-resolution-10-terms", "mx-resolution-11-terms", "one-mx-not-found", "all-mx-not-found",
        "include-not-found", "redirect-not-found")},
    "blitirispf-tests:resolution-with-10-lookups":
        "`include:d11` has no valid top label: a syntax error (RFC 7208 §7.1 domain-end), so permerror, not pass",
}


#: Seconds the resolver waits for the server before a lookup is a TempError (the suite's TIMEOUT names never answer).
TIMEOUT = 0.3

PATHS = ("server", "zone-files")


def _cases(relative: str, scope: Scope) -> list[pytest.param]:
    params = []
    for case in load_suite(relative):
        marks = [pytest.mark.xfail(reason=DISAGREE[case.id], strict=True)] if case.id in DISAGREE else []
        params += [pytest.param(case, scope, path, id=f"{case.id}[{path}]", marks=marks) for path in PATHS]
    return params


class _Scenario:
    """A scenario's DNS: its server on loopback and, for the zone-file path, its data as the resolver's overlay."""

    def __init__(self, case: SuiteCase, folder: Path) -> None:
        records, failures = server_records(case.resolver)
        self.server = LocalDnsServer(records, failures=failures)
        self.case, self.folder = case, folder

    async def __aenter__(self) -> _Scenario:
        await self.server.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.server.__aexit__(*exc_info)

    def resolver(self, path: str) -> DnsResolver:
        zones = write_zone_files(self.case.resolver, self.folder) if path == "zone-files" else []
        return DnsResolver(self.server.settings(timeout=TIMEOUT, zone_files=zones))


async def _check(case: SuiteCase, scope: Scope, resolver: DnsResolver) -> SpfResult:
    checker = SpfChecker(resolver, default_explanation="DEFAULT", receiver="receiver.example")
    if scope == "spf":
        return await checker.check_mail_from(case.host, case.mailfrom, case.helo)
    return await checker.check_host(case.host, case.mailfrom.rpartition("@")[2], case.mailfrom,
                                    helo=case.helo, scope=scope)


@pytest.mark.parametrize(
    ("case", "scope", "path"),
    _cases("rfc7208-tests.yml", "spf") + _cases("rfc4406-tests.yml", "mfrom")
    + _cases("extra/blitirispf-tests.yml", "spf"),
)
async def test_suite_case(case: SuiteCase, scope: Scope, path: str, tmp_path: Path) -> None:
    async with _Scenario(case, tmp_path) as scenario:
        result = await _check(case, scope, scenario.resolver(path))
    assert result.result in case.results, result
    if result.result == "fail" and case.explanation is not None:
        assert result.explanation is not None and result.explanation.lower() == case.explanation.lower()


def _scenarios() -> list[pytest.param]:
    """Each scenario once, with the cases that use its data."""
    scenarios: dict[int, list[SuiteCase]] = {}
    for relative in ("rfc7208-tests.yml", "rfc4406-tests.yml", "extra/blitirispf-tests.yml"):
        for case in load_suite(relative):
            scenarios.setdefault(id(case.resolver), []).append(case)
    return [pytest.param(cases, id=f"{Path(cases[0].file).stem}:{cases[0].scenario[:40]}") for cases in scenarios.values()]


async def _answer(resolver: DnsResolver, name: str, rdtype: str) -> tuple[str, list[str]] | str:
    """The rcode and the records (an RRset has no order), or the error."""
    try:
        answer = await resolver.lookup(name, rdtype)
        return answer.rcode, sorted(map(repr, answer.records))
    except DnsError as exc:
        return type(exc).__name__ + ": " + getattr(exc, "reason", str(exc))


@pytest.mark.parametrize("cases", _scenarios())
async def test_server_and_zone_files_answer_alike(cases: list[SuiteCase], tmp_path: Path) -> None:
    """Every query the scenario's checks make gets the same answer from the server as from the zone-file overlay."""
    async with _Scenario(cases[0], tmp_path) as scenario:
        for case in cases:
            await _check(case, "spf", scenario.resolver("server"))
        asked = sorted(set(scenario.server.queries))
        server, overlay = scenario.resolver("server"), scenario.resolver("zone-files")
        for name, rdtype in asked:
            assert await _answer(overlay, name, rdtype) == await _answer(server, name, rdtype), (name, rdtype)
    single_label = all("." not in c.mailfrom.rpartition("@")[2] for c in cases)  # never looked up (§4.3)
    assert asked or single_label, "the scenario's checks asked nothing of the DNS server"
