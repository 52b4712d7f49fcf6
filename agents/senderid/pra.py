"""The Purported Responsible Address (RFC 4407 §2): which header names the party responsible for a message.

:func:`find_pra` follows the RFC's steps exactly, on the header fields in message order (top first):

1. the first non-empty ``Resent-Sender`` — unless a non-empty ``Resent-From`` above it is separated from it by a
   ``Received`` or ``Return-Path`` field (then the Resent-Sender belongs to an older resent block): go to 2;
2. else the first non-empty ``Resent-From``;
3. else the ``Sender`` field if there is exactly one non-empty one (more than one: no PRA, no fallback);
4. else the ``From`` field if there is exactly one non-empty one (none or several: no PRA);
5. the selected field must hold exactly one mailbox with a domain name, otherwise there is no PRA (again no
   fallback to later fields).

"Non-empty" means holding any non-whitespace character. Mailboxes are parsed with a small RFC 5322 tokenizer
(comments, quoted strings, groups, obsolete routes, RFC 2047 encoded words — never decoded, only kept whole — and
UTF-8 text), so a display name like ``"Doe, John" <j@x>`` or ``=?utf-8?q?Doe,_John?= <j@x>`` is one mailbox. An
address literal (``a@[192.0.2.1]``) has no domain name; we treat it, and anything that does not parse, as the
RFC's "hopelessly malformed".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["PraResult", "find_pra", "parse_mailboxes"]

_UNFOLD = re.compile(r"\r?\n(?=[ \t])")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_SPECIALS = '()<>[]:;@\\,."'
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]+"  # RFC 5322 atext, plus UTF-8 (RFC 6532)
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_ASCII_DOT_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_BARE_ADDR_SPEC = re.compile(rf"({_ASCII_DOT_ATOM})@({_ASCII_DOT_ATOM})")  # ASCII: no Unicode space inside
_ADDRESS_TOKENS = frozenset({"atom", "quoted", "literal", "@", "."})
_CANONICAL = {"resent-sender": "Resent-Sender", "resent-from": "Resent-From", "sender": "Sender", "from": "From"}


@dataclass(frozen=True, slots=True)
class PraResult:
    """The PRA (``address``) and the field that supplied it; with no PRA, ``address`` is None and ``reason`` says why.

    ``header`` is the canonical field name (``Resent-Sender``, ``Resent-From``, ``Sender``, ``From``), also set when the
    selected field held no usable mailbox.
    """

    address: str | None
    header: str | None
    reason: str | None = None

    @property
    def domain(self) -> str | None:
        return self.address.rpartition("@")[2] if self.address else None


class _Malformed(ValueError):
    pass


def find_pra(headers: Iterable[tuple[str, str]]) -> PraResult:
    """RFC 4407 §2 over ``(name, value)`` pairs in message order; values may be folded or unfolded."""
    fields: list[str] = []  # every field's name, lower case
    candidates: dict[str, list[tuple[int, str]]] = {name: [] for name in _CANONICAL}  # the non-empty ones, in order
    for name, value in headers:
        key = name.strip().lower()
        if key in candidates and value.strip():
            candidates[key].append((len(fields), value))
        fields.append(key)
    resent_senders, resent_froms = candidates["resent-sender"], candidates["resent-from"]
    if resent_senders:
        at, value = resent_senders[0]
        above = next((i for i, _ in resent_froms if i < at), None)
        if above is None or not any(field in ("received", "return-path") for field in fields[above + 1:at]):
            return _select("resent-sender", value)
    if resent_froms:
        return _select("resent-from", resent_froms[0][1])
    for name in ("sender", "from"):
        found = candidates[name]
        if len(found) > 1:
            return PraResult(None, None, f"more than one {_CANONICAL[name]} field")
        if found:
            return _select(name, found[0][1])
    return PraResult(None, None, "no Resent-Sender, Resent-From, Sender or From field")


@functools.lru_cache(maxsize=1024)
def _select(name: str, value: str) -> PraResult:
    """The PRA in the field chosen. Remembered by the field's text: mail from one sender repeats it, and
    tokenizing an address list is most of what finding the PRA costs."""
    header = _CANONICAL[name]
    try:
        mailboxes = parse_mailboxes(value)
    except _Malformed as exc:
        return PraResult(None, header, f"the {header} field is malformed: {exc}")
    if len(mailboxes) != 1:
        return PraResult(None, header, f"the {header} field holds {len(mailboxes)} mailboxes, not one")
    local, domain = mailboxes[0]
    if domain.startswith("["):
        return PraResult(None, header, f"the {header} mailbox has an address literal, not a domain name")
    return PraResult(f"{local}@{domain}", header)


def parse_mailboxes(value: str) -> list[tuple[str, str]]:
    """The ``(local-part, domain)`` of every mailbox in an address-list field value, groups included.

    Raises ValueError when the value is not an address list.
    """
    bare = _BARE_ADDR_SPEC.fullmatch(value.strip())
    if bare:  # the common `From: user@domain`: the tokenizer would find just these atoms, dots and one '@'
        return [(bare.group(1), bare.group(2))]
    return _parse_tokens(value)


def _parse_tokens(value: str) -> list[tuple[str, str]]:
    """parse_mailboxes the long way, token by token."""
    tokens = _tokens(_UNFOLD.sub("", value))
    mailboxes: list[tuple[str, str]] = []
    item: list[tuple[str, str]] = []
    in_group = False
    position = 0
    while position < len(tokens):
        kind, text = tokens[position]
        position += 1
        if kind == "<":
            close = next((i for i in range(position, len(tokens)) if tokens[i][0] == ">"), None)
            if close is None:
                raise _Malformed("'<' without '>'")
            mailboxes.append(_addr_spec(_strip_route(tokens[position:close])))
            position, item = close + 1, []
            if position < len(tokens) and tokens[position][0] not in ",;":
                raise _Malformed(f"unexpected {tokens[position][1]!r} after '>'")
        elif kind == ":" and not in_group:
            in_group, item = True, []  # what came before was the group's display name
        elif kind in ",;":
            if kind == ";":
                if not in_group:
                    raise _Malformed("';' outside a group")
                in_group = False
            if item:
                mailboxes.append(_addr_spec(item))
            item = []
        elif kind in _ADDRESS_TOKENS:
            item.append((kind, text))
        else:
            raise _Malformed(f"unexpected {text!r}")
    if in_group:
        raise _Malformed("group without ';'")
    if item:
        mailboxes.append(_addr_spec(item))
    return mailboxes


def _strip_route(tokens: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop an obsolete source route (``<@relay1,@relay2:user@domain>``)."""
    if tokens and tokens[0][0] == "@":
        colon = next((i for i, (kind, _) in enumerate(tokens) if kind == ":"), None)
        if colon is None:
            raise _Malformed("source route without ':'")
        return tokens[colon + 1:]
    return tokens


def _addr_spec(tokens: list[tuple[str, str]]) -> tuple[str, str]:
    ats = [i for i, (kind, _) in enumerate(tokens) if kind == "@"]
    if len(ats) != 1:
        raise _Malformed("a mailbox needs exactly one '@'" if ats or tokens else "empty address")
    local_tokens, domain_tokens = tokens[:ats[0]], tokens[ats[0] + 1:]
    local = _dotted(local_tokens, ("atom", "quoted"))
    if domain_tokens and domain_tokens[0][0] == "literal" and len(domain_tokens) == 1:
        return local, domain_tokens[0][1]
    return local, _dotted(domain_tokens, ("atom",))


def _dotted(tokens: list[tuple[str, str]], word_kinds: tuple[str, ...]) -> str:
    """``word *("." word)``, joined back into text; a single quoted string that is a dot-atom loses its quotes."""
    if not tokens or len(tokens) % 2 == 0:
        raise _Malformed("missing local part or domain")
    for i, (kind, text) in enumerate(tokens):
        if not (kind in word_kinds if i % 2 == 0 else kind == "."):
            raise _Malformed(f"unexpected {text!r} in an address")
    if len(tokens) == 1 and tokens[0][0] == "quoted" and _DOT_ATOM.fullmatch(tokens[0][1][1:-1]):
        return tokens[0][1][1:-1]
    return "".join(text for _, text in tokens)


def _tokens(value: str) -> list[tuple[str, str]]:
    """RFC 5322 lexical tokens; comments and whitespace are dropped. Kinds: atom, quoted, literal, or the special."""
    tokens: list[tuple[str, str]] = []
    i, end = 0, len(value)
    while i < end:
        char = value[i]
        if char.isspace():
            i += 1
        elif char == "(":
            i = _skip_comment(value, i)
        elif char == '"':
            close = _closing(value, i + 1, '"')
            tokens.append(("quoted", value[i:close + 1]))
            i = close + 1
        elif char == "[":
            close = _closing(value, i + 1, "]")
            tokens.append(("literal", value[i:close + 1]))
            i = close + 1
        elif char in _SPECIALS:
            tokens.append((char, char))
            i += 1
        else:
            word = _ENCODED_WORD.match(value, i)
            stop = word.end() if word else i
            while stop < end and not value[stop].isspace() and value[stop] not in _SPECIALS:
                stop += 1
            tokens.append(("atom", value[i:stop]))
            i = stop
    return tokens


def _closing(value: str, start: int, closer: str) -> int:
    """Index of the ``closer`` ending a quoted string or domain literal, honouring backslash quoted-pairs."""
    i = start
    while i < len(value):
        if value[i] == "\\":
            i += 2
        elif value[i] == closer:
            return i
        else:
            i += 1
    raise _Malformed(f"unterminated {closer}")


def _skip_comment(value: str, start: int) -> int:
    depth, i = 0, start
    while i < len(value):
        char = value[i]
        if char == "\\":
            i += 1
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise _Malformed("unterminated comment")
