"""The openspf-format YAML suites as data: each scenario's ``zonedata`` becomes an in-memory resolver.

Shared by ``test_spf_suite.py`` and ``bench/spf_bench.py``. The fake DNS follows the rules in
``shared/testsuites/spf/README.md``: SPF entries are also served as TXT unless the name has an explicit TXT entry
(``TXT: NONE`` included); names are case-insensitive; a missing name is NXDOMAIN and a name without the requested type
NODATA; a CNAME is followed when the name has no entry of the requested type (a loop ends as NXDOMAIN); ``TIMEOUT``
(bare, or blitiri's ``TIMEOUT: true``) times out every query the name cannot answer, and blitiri's ``SERVFAIL: true``
likewise fails with SERVFAIL. TXT strings are encoded as UTF-8, so the suite's ``\\x80``-style characters arrive as
non-ASCII bytes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from transport.core.dns import DnsAnswer, DnsTempError

SUITES = Path(__file__).resolve().parents[1].parent / "shared" / "testsuites" / "spf"

_MAX_CNAME_CHAIN = 8


def _key(name: str) -> str:
    name = name.lower()
    return name[:-1] if name.endswith(".") else name


def _txt(value: str | Sequence[str]) -> tuple[bytes, ...]:
    strings = [value] if isinstance(value, str) else value
    return tuple(s.encode("utf-8") for s in strings)


class ZoneResolver:
    """An in-memory :class:`transport.core.dns.Resolver` built from one scenario's ``zonedata``."""

    def __init__(self, zonedata: Mapping[str, Sequence[Any]]) -> None:
        self.records: dict[str, dict[str, list[Any]]] = {}
        self.failing: dict[str, str] = {}  # name → "timeout" / "servfail" for queries it cannot answer
        for owner, entries in (zonedata or {}).items():
            name = _key(owner)
            types = self.records.setdefault(name, {})
            spf: list[tuple[bytes, ...]] = []
            explicit_txt = False
            for entry in entries:
                if isinstance(entry, str):  # the bare TIMEOUT item
                    self.failing[name] = "timeout"
                    continue
                ((rdtype, value),) = entry.items()
                if rdtype in ("TIMEOUT", "SERVFAIL"):
                    self.failing[name] = rdtype.lower()
                elif rdtype in ("SPF", "TXT"):
                    explicit_txt |= rdtype == "TXT"
                    if value != "NONE":
                        (spf if rdtype == "SPF" else types.setdefault("TXT", [])).append(_txt(value))
                elif rdtype == "MX":
                    types.setdefault("MX", []).append((int(value[0]), _key(str(value[1]))))
                elif rdtype in ("PTR", "CNAME"):
                    types.setdefault(rdtype, []).append(_key(str(value)))
                else:
                    types.setdefault(rdtype, []).append(str(value))
            if spf and not explicit_txt:
                types.setdefault("TXT", []).extend(spf)
        self.answers = {(name, rdtype): DnsAnswer(name, rdtype, "NOERROR", tuple(values), 300)
                        for name, types in self.records.items() for rdtype, values in types.items() if values}

    async def lookup(self, name: str, rdtype: str) -> DnsAnswer:
        qname = _key(name)
        answer = self.answers.get((qname, rdtype))
        if answer is not None:
            return answer
        current = qname
        for _ in range(_MAX_CNAME_CHAIN):
            if current in self.failing:
                raise DnsTempError(qname, rdtype, self.failing[current])
            types = self.records.get(current)
            if types is None:
                return DnsAnswer(qname, rdtype, "NXDOMAIN", (), 300)
            if "CNAME" not in types or rdtype == "CNAME":
                return DnsAnswer(qname, rdtype, "NODATA", (), 300)
            current = types["CNAME"][0]
            answer = self.answers.get((current, rdtype))
            if answer is not None:
                return DnsAnswer(qname, rdtype, "NOERROR", answer.records, answer.ttl)
        return DnsAnswer(qname, rdtype, "NXDOMAIN", (), 300)  # CNAME loop: no such host


@dataclass(frozen=True)
class SuiteCase:
    """One test of a suite file, with the resolver of its scenario."""

    file: str
    scenario: str
    name: str
    host: str
    mailfrom: str
    helo: str
    results: tuple[str, ...]
    explanation: str | None
    resolver: ZoneResolver = field(repr=False, compare=False)

    @property
    def id(self) -> str:
        return f"{Path(self.file).stem}:{self.name}"


def load_suite(relative: str) -> Iterator[SuiteCase]:
    """The cases of ``SUITES/relative``, one resolver per scenario (domains are reused with other data)."""
    with open(SUITES / relative, "rb") as stream:
        for scenario in yaml.load_all(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if not scenario:
                continue
            resolver = ZoneResolver(scenario.get("zonedata") or {})
            for name, test in scenario["tests"].items():
                expected = test["result"]
                yield SuiteCase(
                    relative, scenario.get("description", ""), name, str(test["host"]), str(test.get("mailfrom", "")),
                    str(test.get("helo", "")), tuple([expected] if isinstance(expected, str) else expected),
                    test.get("explanation"), resolver)
