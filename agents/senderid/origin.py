"""The originating IP: the address Sender ID (and end-of-headers connection checks) must judge.

Exchange's rule (reference §2): a connection from outside the organisation is judged by its own address. A connection
from one of the organisation's own SMTP servers (``InternalSMTPServers``: addresses and CIDR ranges) relayed the
message, so the ``Received`` fields are walked newest → oldest, skipping hops whose from-address is internal and lines
written by the Pickup directory; the first other from-address is the originating IP. None means there is none, and
Sender ID then skips the message.

The from-address of a ``Received`` field is read from its ``from`` clause: first from the TCP-info comment, which the
receiving server wrote (``(host.example [192.0.2.1])``, Exchange's ``(192.0.2.1)``, ``([IPv6:2001:db8::1])``), else from
an address literal given as the HELO name (``from [192.0.2.1]``). IPv4-mapped IPv6 addresses count as IPv4.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from transport.core.internal_servers import (IPAddress, IPNetwork, client_address, is_internal, normalise,
                                             parse_internal_servers)

__all__ = ["IPAddress", "IPNetwork", "is_internal", "originating_ip", "parse_internal_servers", "received_from_ip"]


_CANDIDATE = re.compile(r"\[(?:IPv6:)?([^\[\]\s]+)\]|([0-9A-Fa-f.:]+)", re.I)
"""An address literal, or a run of hex digits, dots and colons (a run with neither is no address, and the parse
below says so): no part of it can rescan a run, so a hostile Received line costs time in proportion to its length."""
_FROM = re.compile(r"\s*from\s+(.*?)(?=\s(?:by|via|with|id|for)\s|;|\Z)", re.I | re.S)
_BY = re.compile(r"(?:^|\s)by\s+([^\s;]+)", re.I)


def _split_comments(value: str) -> tuple[str, list[tuple[int, str]]]:
    """The text outside comments (each comment replaced by a space) and each comment with its offset in that text."""
    outside: list[str] = []
    comments: list[tuple[int, str]] = []
    inside: list[str] = []
    depth = position = i = 0
    while i < len(value):
        char = value[i]
        if depth and char == "\\":
            inside.append(value[i + 1:i + 2])
            i += 2
            continue
        if char == "(":
            if depth:
                inside.append(char)
            else:
                outside.append(" ")
                position += 1
            depth += 1
        elif char == ")" and depth:
            depth -= 1
            if depth:
                inside.append(char)
            else:
                comments.append((position, "".join(inside)))
                inside = []
        elif depth:
            inside.append(char)
        else:
            outside.append(char)
            position += 1
        i += 1
    return "".join(outside), comments


def _clauses(value: str) -> tuple[str, list[str], str]:
    """A Received value's ``from`` clause (outside comments), the comments within it, and its ``by`` host."""
    outside, comments = _split_comments(value)
    by = _BY.search(outside)
    by_host = by.group(1) if by else ""
    from_clause = _FROM.match(outside)
    if from_clause is None:
        return "", [], by_host
    return from_clause.group(1), [text for at, text in comments if at <= from_clause.end()], by_host


def received_from_ip(value: str) -> IPAddress | None:
    """The from-address of one Received field value, or None when its ``from`` clause names none."""
    helo, comments, _ = _clauses(value)
    for text in [*comments, helo]:
        for literal, bare in _CANDIDATE.findall(text):
            try:
                return normalise(ipaddress.ip_address(literal or bare))
            except ValueError:
                continue
    return None


def originating_ip(
    connecting_ip: str | IPAddress, internal_servers: Iterable[IPNetwork], received: Iterable[str],
) -> IPAddress | None:
    """Exchange's originating IP for a message from ``connecting_ip`` with these Received values (newest first)."""
    internal = tuple(internal_servers)
    address = client_address(connecting_ip)
    if not is_internal(address, internal):
        return address
    for value in received:
        _, _, by_host = _clauses(value)
        if by_host.lower() == "pickup":  # written by the Pickup directory: no network hop
            continue
        hop = received_from_ip(value)
        if hop is not None and not is_internal(hop, internal):
            return hop
    return None
