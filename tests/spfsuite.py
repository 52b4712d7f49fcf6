"""The openspf-format YAML suites as data: each scenario's ``zonedata`` as DNS data three ways.

``test_spf_suite.py`` serves a scenario's data from a real DNS server on loopback (``server_records``, for
``tests/dnsserver.py``) and from zone files (``write_zone_files``), and asks the shipped ``DnsResolver``, so the
suite checks the engine over the DNS layer the hub runs; ``bench/spf_bench.py`` and the engine's unit tests use the
in-memory ``ZoneResolver`` (both engines of the bench see the same data). All three follow the rules in
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

import dns.name
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


def _rdata_text(rdtype: str, value: Any) -> str:
    """One record in master-file rdata text; names absolute, TXT bytes escaped as \\DDD."""
    if rdtype == "TXT":
        return " ".join('"' + "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\{b:03d}" for b in s)
                        + '"' for s in value) if value else '""'
    if rdtype == "MX":
        return f"{value[0]} {value[1]}."
    if rdtype in ("PTR", "CNAME"):
        return f"{value}."
    return str(value)


def server_records(zone: ZoneResolver) -> tuple[dict[str, dict[str, list[str]]], dict[str, str]]:
    """A scenario's data as ``LocalDnsServer(records, failures=...)`` takes it."""
    records = {name: {rdtype: [_rdata_text(rdtype, v) for v in values] for rdtype, values in types.items() if values}
               for name, types in zone.records.items()}
    return records, dict(zone.failing)


def write_zone_files(zone: ZoneResolver, folder: Path) -> list[Path]:
    """A scenario's data as BIND zone files for the resolver's overlay: one zone per owner name, so a name no owner
    covers (every name that must time out or fail, and a name that exists with no records) goes on to the DNS
    servers, as names outside a real overlay do."""
    paths = []
    for index, (name, types) in enumerate(sorted(zone.records.items())):
        if name in zone.failing or not any(types.values()):  # a zone file cannot say "exists, no records"
            continue
        origin = dns.name.Name([label.encode("latin-1") for label in name.split(".")] + [b""]).to_text()
        lines = [f"$ORIGIN {origin}"]  # no SOA: the overlay does not need one, and a CNAME owner cannot have one
        lines += [f"@ 300 IN {rdtype} {_rdata_text(rdtype, v)}" for rdtype, values in types.items() for v in values]
        path = folder / f"zone{index}.zone"
        path.write_text("\n".join(lines) + "\n", encoding="ascii")
        paths.append(path)
    return paths


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
