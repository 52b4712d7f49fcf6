"""The openspf conformance suites (RFC 7208, RFC 4406 mfrom scope, blitiri's extras) against agents.senderid.spf."""

from __future__ import annotations

import pytest

from agents.senderid.records import Scope
from agents.senderid.spf import SpfChecker, SpfResult
from spfsuite import SUITES, SuiteCase, load_suite

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


def _cases(relative: str, scope: Scope) -> list[pytest.param]:
    params = []
    for case in load_suite(relative):
        marks = [pytest.mark.xfail(reason=DISAGREE[case.id], strict=True)] if case.id in DISAGREE else []
        params.append(pytest.param(case, scope, id=case.id, marks=marks))
    return params


async def _check(case: SuiteCase, scope: Scope) -> SpfResult:
    checker = SpfChecker(case.resolver, default_explanation="DEFAULT", receiver="receiver.example")
    if scope == "spf":
        return await checker.check_mail_from(case.host, case.mailfrom, case.helo)
    return await checker.check_host(case.host, case.mailfrom.rpartition("@")[2], case.mailfrom,
                                    helo=case.helo, scope=scope)


@pytest.mark.parametrize(
    ("case", "scope"),
    _cases("rfc7208-tests.yml", "spf") + _cases("rfc4406-tests.yml", "mfrom")
    + _cases("extra/blitirispf-tests.yml", "spf"),
)
async def test_suite_case(case: SuiteCase, scope: Scope) -> None:
    result = await _check(case, scope)
    assert result.result in case.results, result
    if result.result == "fail" and case.explanation is not None:
        assert result.explanation is not None and result.explanation.lower() == case.explanation.lower()
