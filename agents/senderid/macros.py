"""SPF macro strings (RFC 7208 §7): parsed once when a record is parsed, expanded per check.

A macro string is kept as a tuple of literal ``str`` pieces and :class:`Macro` items, so expansion is a join, and a
string without macros needs no expansion at all. Escapes (``%%``, ``%_``, ``%-``) become literals while parsing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["Macro", "MacroString", "MacroSyntaxError", "expand", "parse_macro_string"]

#: Letters valid in every macro string; ``c``, ``r`` and ``t`` only in explanation text (RFC 7208 §7.2).
DOMAIN_LETTERS = frozenset("slodiphv")
EXPLANATION_LETTERS = DOMAIN_LETTERS | frozenset("crt")

_MACRO = re.compile(r"%\{([A-Za-z])([0-9]*)([rR]?)([.\-+,/_=]*)\}")
_ESCAPES = {"%": "%", "_": " ", "-": "%20"}
_DEFAULT_SPLIT = re.compile(r"\.")


class MacroSyntaxError(ValueError):
    """The text is not a valid macro string; inside a record that makes the result PermError."""


@dataclass(frozen=True, slots=True)
class Macro:
    """One ``%{...}`` expansion: letter, right-most ``digits`` parts (0 = all), reversal, split characters."""

    letter: str
    digits: int
    reverse: bool
    split: re.Pattern[str] | None
    url_escape: bool

    def expand(self, value: str) -> str:
        if self.digits or self.reverse or self.split is not None:
            parts = (self.split or _DEFAULT_SPLIT).split(value)
            if self.reverse:
                parts.reverse()
            if self.digits and self.digits < len(parts):
                parts = parts[-self.digits:]
            value = ".".join(parts)
        # Upper-case letters: URL-escape everything outside RFC 3986 "unreserved", with upper-case hex.
        return quote(value, safe="") if self.url_escape else value


MacroString = tuple[str | Macro, ...]


def parse_macro_string(text: str, letters: frozenset[str] = DOMAIN_LETTERS) -> tuple[MacroString, bool]:
    """Parse ``text``; return its pieces and whether it ends in a macro-expand (which a domain-spec may).

    Raises :class:`MacroSyntaxError` for a ``%`` not starting a valid expansion and for letters outside ``letters``.
    """
    parts: list[str | Macro] = []
    literal: list[str] = []
    pos, ends_with_macro = 0, False
    while (at := text.find("%", pos)) >= 0:
        literal.append(text[pos:at])
        following = text[at + 1:at + 2]
        if following in _ESCAPES:
            literal.append(_ESCAPES[following])
            pos = at + 2
        else:
            match = _MACRO.match(text, at)
            if match is None:
                raise MacroSyntaxError(f"invalid macro at {text[at:at + 8]!r}")
            letter, digits, reverse, delimiters = match.groups()
            if letter.lower() not in letters:
                raise MacroSyntaxError(f"macro letter {letter!r} is not allowed here")
            if digits and int(digits) == 0:
                raise MacroSyntaxError("a macro's digit transformer must not be zero")
            if joined := "".join(literal):
                parts.append(joined)
            literal = []
            split = re.compile("[" + re.escape(delimiters) + "]") if delimiters else None
            parts.append(Macro(letter.lower(), int(digits or 0), bool(reverse), split, letter.isupper()))
            pos = match.end()
        ends_with_macro = pos == len(text)
    literal.append(text[pos:])
    tail = "".join(literal)
    if tail:
        parts.append(tail)
    return tuple(parts), ends_with_macro


def expand(parts: MacroString, values: Mapping[str, str]) -> str:
    """Join the pieces, expanding each macro from ``values`` (letter → value; the caller supplies what is used)."""
    return "".join(part if part.__class__ is str else part.expand(values[part.letter])  # type: ignore[union-attr]
                   for part in parts)
