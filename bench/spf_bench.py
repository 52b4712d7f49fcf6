"""SPF engine CPU benchmark: every rfc7208-tests.yml check through agents.senderid.spf and through pyspf.

Both engines see the same in-memory DNS data (the suite's zonedata, built by ``tests/spfsuite.py``), so the numbers
compare evaluation cost only; real checks are dominated by DNS latency. A round runs all 203 checks once per variant,
the variants taking turns within each round so that background load hits them alike. The report gives checks/second
(median, min, max over the rounds), µs per check, how many results matched the suite, and the ratio of the medians.

Our engine is measured twice: as deployed (parsed records cached by text), and with that cache emptied before every
check, which is the like-for-like comparison with pyspf, which parses the record on every check.

    .venv/bin/python bench/spf_bench.py [--rounds N]

pyspf is only a benchmark peer, never a dependency: ``.venv/bin/pip install pyspf`` to compare against it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from agents.senderid import records  # noqa: E402
from agents.senderid.spf import SpfChecker  # noqa: E402
from spfsuite import SUITES, SuiteCase, ZoneResolver, load_suite  # noqa: E402

Check = Callable[[SuiteCase], Awaitable[str]]


def _our_check(cases: list[SuiteCase], cold_parse: bool) -> Check:
    checkers = {id(case.resolver): SpfChecker(case.resolver, default_explanation="DEFAULT") for case in cases}

    async def check(case: SuiteCase) -> str:
        if cold_parse:
            records._parse_cached.cache_clear()  # what a first sight of every record costs
        return (await checkers[id(case.resolver)].check_mail_from(case.host, case.mailfrom, case.helo)).result

    return check


class _PyspfZone:
    """pyspf's DNS hook (``spf.DNSLookup``) answering from a ZoneResolver's data, in pyspf's return format."""

    def __init__(self, spf: Any) -> None:
        self.spf = spf
        self.zone: ZoneResolver | None = None

    def __call__(self, name: str, qtype: str, strict: Any = True, timeout: Any = None) -> list[tuple[Any, Any]]:
        assert self.zone is not None
        key = name.lower().rstrip(".")
        answers: list[tuple[Any, Any]] = []
        for _ in range(8):
            if key in self.zone.failing and qtype not in self.zone.records.get(key, {}):
                raise self.spf.TempError(f"DNS {self.zone.failing[key]}")
            types = self.zone.records.get(key, {})
            if qtype in types:
                return answers + [((key, qtype), list(v) if qtype == "TXT" else v) for v in types[qtype]]
            if "CNAME" not in types:
                return answers
            answers.append(((key, "CNAME"), types["CNAME"][0]))
            key = types["CNAME"][0]
        return answers


def _pyspf_check() -> tuple[str, Check] | None:
    try:
        import spf  # type: ignore[import-not-found]
    except ImportError:
        return None
    hook = _PyspfZone(spf)
    spf.DNSLookup = hook
    legacy = {"unknown": "permerror", "error": "temperror"}

    async def check(case: SuiteCase) -> str:
        hook.zone = case.resolver
        query = spf.query(i=case.host, s=case.mailfrom, h=case.helo)
        query.set_default_explanation("DEFAULT")
        result = query.check()[0]
        return legacy.get(result, result)

    return f"pyspf {getattr(spf, '__version__', '')}".strip(), check


async def _measure(
    cases: list[SuiteCase], variants: dict[str, Check], rounds: int,
) -> dict[str, tuple[list[float], int]]:
    timings: dict[str, list[float]] = {label: [] for label in variants}
    correct = dict.fromkeys(variants, 0)
    for round_ in range(rounds + 1):  # round 0 warms up, counts matching results, and is not timed
        for label, check in variants.items():
            started = time.perf_counter()
            for case in cases:
                result = await check(case)
                if round_ == 0:
                    correct[label] += result in case.results
            if round_:
                timings[label].append(time.perf_counter() - started)
    return {label: (timings[label], correct[label]) for label in variants}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds over all checks (default 30)")
    args = parser.parse_args(argv)
    if not SUITES.is_dir():
        print(f"SPF test suites not found at {SUITES}")
        return 1
    cases = list(load_suite("rfc7208-tests.yml"))
    variants = {"agents.senderid.spf (cached parse)": _our_check(cases, cold_parse=False),
                "agents.senderid.spf (parse each)": _our_check(cases, cold_parse=True)}
    peer = _pyspf_check()
    if peer is not None:
        variants[peer[0]] = peer[1]
    print(f"{len(cases)} checks from rfc7208-tests.yml, {args.rounds} rounds, Python {sys.version.split()[0]}")
    medians = {}
    for label, (timings, correct) in asyncio.run(_measure(cases, variants, args.rounds)).items():
        rates = [len(cases) / seconds for seconds in timings]
        medians[label] = median = statistics.median(rates)
        print(f"{label:<34} {median:>9,.0f} checks/s  (min {min(rates):,.0f}, max {max(rates):,.0f})"
              f"  {1e6 / median:6.1f} µs/check  results as expected {correct}/{len(cases)}")
    if peer is None:
        print("pyspf is not installed; for the comparison: .venv/bin/pip install pyspf")
        return 0
    ours, cold, theirs = medians.values()
    print(f"ours / pyspf (medians): {ours / theirs:.2f}x with the parse cache,"
          f" {cold / theirs:.2f}x parsing every check")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
