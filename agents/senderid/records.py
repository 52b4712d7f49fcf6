"""SPF and Sender ID records: choosing the one record that applies to a scope, and parsing it whole.

Record selection (RFC 7208 §4.5, RFC 4406 §4.4), for the TXT RRs found at a domain:

* scope ``spf`` (plain RFC 7208): only ``v=spf1`` records count (tag case-insensitive, followed by a space or the
  end). None → no record (result None); more than one → PermError.
* scopes ``mfrom`` and ``pra`` (Sender ID): ``spf2.<minor>/<scope>,<scope>...`` records that list the scope as a whole
  token are preferred; more than one of them → PermError. When none lists the scope, a ``v=spf1`` record applies
  (more than one → PermError).

  RFC 4406 says two things about that fallback. §3.4 (publishing compatibility) says a checker should treat
  ``v=spf1`` as ``spf2.0/mfrom,pra`` only when the domain publishes *no* ``spf2.0`` record at all; §4.4 step 4 (the
  selection algorithm) keeps the ``v=spf1`` record whenever no ``spf2`` record carries the requested scope. We follow
  **§4.4**: it is the normative decision procedure, it is what Exchange's Sender ID agent does ("``spf2.0/...pra``
  preferred over ``v=spf1``"), and it never leaves a domain unchecked merely because it published a record for the
  *other* scope. So ``spf2.0/mfrom -all`` plus ``v=spf1 +all`` gives ``-all`` for mfrom and ``+all`` for pra.

Parsing validates the entire record before anything is evaluated (an error after the matching term is still a
PermError), and returns an immutable :class:`Record`. Parsed records are cached by text: popular records (a provider's
``include:``) are parsed once per process, not once per message.

Sender ID's positional modifiers (RFC 4406 §3.3) are not distinguished from global ones: none is defined, and unknown
modifiers are ignored wherever they stand.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from .macros import MacroString, MacroSyntaxError, parse_macro_string

__all__ = ["DomainSpec", "Mechanism", "PermanentError", "Record", "Scope", "dns_name", "parse_record", "select_record"]

Scope = Literal["spf", "mfrom", "pra"]
#: A domain-spec: a ``str`` when it holds no macro and is a usable DNS name, else the parsed macro string.
DomainSpec = str | MacroString

_QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}

_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9_.\-]*)=(.*)", re.S)
_DIRECTIVE = re.compile(r"([+\-~?]?)([A-Za-z][A-Za-z0-9]*)(.*)", re.S)
_DUAL_CIDR = re.compile(r"(.*?)(?:/([0-9]+))?(?://([0-9]+))?", re.S)
_IP_NETWORK = re.compile(r":([^/]*)(?:/([0-9]+))?", re.S)
_CIDR = re.compile(r"0|[1-9][0-9]{0,2}")
_TOPLABEL_END = re.compile(r"\.(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9])\.?\Z")
_SPF2 = re.compile(rb"spf2\.[0-9]+/([A-Za-z][A-Za-z0-9._\-]*(?:,[A-Za-z][A-Za-z0-9._\-]*)*)(?: |\Z)", re.I)


class PermanentError(ValueError):
    """The published records cannot be used: SPF's PermError. The message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Mechanism:
    """One directive. ``domain`` None means the current domain; ``network`` and the CIDRs serve ip4/ip6/a/mx."""

    text: str
    result: str
    kind: str
    domain: DomainSpec | None = None
    network: int = 0
    cidr4: int = 32
    cidr6: int = 128


@dataclass(frozen=True, slots=True)
class Record:
    text: str
    mechanisms: tuple[Mechanism, ...]
    redirect: DomainSpec | None
    explanation: DomainSpec | None


def dns_name(name: str) -> str | None:
    """The name to query for an expanded domain-spec, or None when no DNS name can be made of it.

    One trailing dot is dropped; a name over 253 characters loses labels from the left until it fits (RFC 7208
    §7.3); an empty or over-long label, or a non-ASCII character, makes it unusable (the term then does not match).
    """
    if name.endswith("."):
        name = name[:-1]
    while len(name) > 253:
        cut = name.find(".")
        if cut < 0:
            return None
        name = name[cut + 1:]
    if not name or not name.isascii():
        return None
    for label in name.split("."):
        if not label or len(label) > 63:
            return None
    return name


def select_record(txt_records: Iterable[tuple[bytes, ...]], scope: Scope) -> Record | None:
    """The parsed record that applies to ``scope`` among a domain's TXT RRs (see the module docstring)."""
    spf1: list[bytes] = []
    spf2: list[tuple[bytes, int]] = []
    for strings in txt_records:
        raw = strings[0] if len(strings) == 1 else b"".join(strings)
        if raw[:6].lower() == b"v=spf1" and (len(raw) == 6 or raw[6] == 0x20):
            spf1.append(raw)
        elif scope != "spf" and (match := _SPF2.match(raw)):
            if scope in match.group(1).decode().lower().split(","):
                spf2.append((raw, match.end(1)))
    if spf2:
        if len(spf2) > 1:
            raise PermanentError(f"more than one spf2.0 record covers the {scope} scope")
        raw, start = spf2[0]
    elif spf1:
        if len(spf1) > 1:
            raise PermanentError("more than one v=spf1 record")
        raw, start = spf1[0], 6
    else:
        return None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise PermanentError("the SPF record contains non-ASCII characters") from None
    return parse_record(text, start)


def parse_record(text: str, start: int = 6) -> Record:
    """Parse the terms of ``text`` after its version tag (which ends at ``start``); PermanentError if invalid."""
    parsed = _parse_cached(text, start)
    if isinstance(parsed, str):
        raise PermanentError(parsed)
    return parsed


@lru_cache(maxsize=2048)
def _parse_cached(text: str, start: int) -> Record | str:
    """The record, or the problem text (so failures are cached too)."""
    try:
        return _parse(text, start)
    except (PermanentError, MacroSyntaxError) as exc:
        return str(exc)


def _parse(text: str, start: int) -> Record:
    mechanisms: list[Mechanism] = []
    modifiers: dict[str, DomainSpec] = {}
    for term in text[start:].split(" "):
        if not term:
            continue
        if not term.isprintable():
            raise PermanentError(f"invalid character in term {term!r}")
        modifier = _MODIFIER.fullmatch(term)
        if modifier is None:
            mechanisms.append(_mechanism(term))
            continue
        name, value = modifier.group(1).lower(), modifier.group(2)
        if name in ("redirect", "exp"):
            if name in modifiers:
                raise PermanentError(f"{name}= appears more than once")
            modifiers[name] = _domain_spec(value)
        else:
            parse_macro_string(value)  # unknown modifiers are ignored, but must still be well-formed
    return Record(text, tuple(mechanisms), modifiers.get("redirect"), modifiers.get("exp"))


def _mechanism(term: str) -> Mechanism:
    directive = _DIRECTIVE.fullmatch(term)
    if directive is None:
        raise PermanentError(f"invalid term {term!r}")
    qualifier, name, rest = directive.groups()
    kind, result = name.lower(), _QUALIFIERS[qualifier or "+"]
    if kind == "all":
        if rest:
            raise PermanentError(f"invalid term {term!r}")
        return Mechanism(term, result, kind)
    if kind in ("include", "exists"):
        if not rest.startswith(":"):
            raise PermanentError(f"{kind} needs a domain: {term!r}")
        return Mechanism(term, result, kind, _domain_spec(rest[1:]))
    if kind == "ptr":
        if rest and not rest.startswith(":"):
            raise PermanentError(f"invalid term {term!r}")
        return Mechanism(term, result, kind, _domain_spec(rest[1:]) if rest else None)
    if kind in ("a", "mx"):
        spec, cidr4, cidr6 = _DUAL_CIDR.fullmatch(rest).groups()  # type: ignore[union-attr]  # always matches
        if spec and not spec.startswith(":"):
            raise PermanentError(f"invalid term {term!r}")
        domain = _domain_spec(spec[1:]) if spec else None
        return Mechanism(term, result, kind, domain, 0, _cidr(cidr4, 32, term), _cidr(cidr6, 128, term))
    if kind in ("ip4", "ip6"):
        network = _IP_NETWORK.fullmatch(rest)
        if network is None:
            raise PermanentError(f"invalid term {term!r}")
        address, length = network.groups()
        try:
            if "%" in address:
                raise ValueError(address)
            value = int(ipaddress.IPv4Address(address) if kind == "ip4" else ipaddress.IPv6Address(address))
        except ValueError:
            raise PermanentError(f"invalid address in {term!r}") from None
        if kind == "ip4":
            return Mechanism(term, result, kind, None, value, cidr4=_cidr(length, 32, term))
        return Mechanism(term, result, kind, None, value, cidr6=_cidr(length, 128, term))
    raise PermanentError(f"unknown mechanism {term!r}")


def _cidr(length: str | None, maximum: int, term: str) -> int:
    if length is None:
        return maximum
    if not _CIDR.fullmatch(length) or int(length) > maximum:
        raise PermanentError(f"invalid CIDR length in {term!r}")
    return int(length)


def _domain_spec(text: str) -> DomainSpec:
    """Validate a domain-spec (RFC 7208 §7.1: it must end in a macro or a valid top label)."""
    if not text:
        raise PermanentError("empty domain-spec")
    try:
        parts, ends_with_macro = parse_macro_string(text)
    except MacroSyntaxError as exc:
        raise PermanentError(f"{text!r}: {exc}") from None
    if not ends_with_macro and not _TOPLABEL_END.search(text):
        raise PermanentError(f"{text!r} does not end in a valid top-level domain label")
    if len(parts) == 1 and isinstance(parts[0], str) and (name := dns_name(parts[0])) is not None:
        return name
    return parts
