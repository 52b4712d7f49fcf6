"""Originating IP: external connections, walking Received fields behind internal relays, and Received parsing."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from guards import returns_within
from agents.senderid.origin import is_internal, originating_ip, parse_internal_servers, received_from_ip

INTERNAL = parse_internal_servers(["192.0.2.25", "198.51.100.0/24", "2001:db8:1::/48"])

EXCHANGE_HOP = ("from EDGE01.contoso.com (198.51.100.10) by HUB01.contoso.com (198.51.100.20) with Microsoft SMTP"
                " Server (TLS) id 15.0.1497.2; Thu, 26 Nov 2026 10:00:02 +0000")
POSTFIX_HOP = ("from mail.fabrikam.example (mail.fabrikam.example [203.0.113.7])\r\n\t(using TLSv1.3 with cipher"
               " TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n\tby edge01.contoso.com (Postfix) with ESMTPS id 4Xy;"
               " Thu, 26 Nov 2026 10:00:01 +0000")
PICKUP_HOP = "from localhost by Pickup with Microsoft SMTP Server id 15.0.1497.2; Thu, 26 Nov 2026 09:59:00 +0000"


@pytest.mark.parametrize(("value", "expected"), [
    (EXCHANGE_HOP, "198.51.100.10"),
    (POSTFIX_HOP, "203.0.113.7"),
    ("from [203.0.113.9] (helo=foo) by mx.example with esmtp", "203.0.113.9"),
    ("from client.example (unknown [IPv6:2001:db8::7]) by mx.example", "2001:db8::7"),
    ("from client.example ([2001:db8::8]) by mx.example", "2001:db8::8"),
    ("from relay.example (relay.example [::ffff:203.0.113.5]) by mx.example", "203.0.113.5"),
    ("from host.example (host.example [203.0.113.11] (may be forged)) by mx.example", "203.0.113.11"),
    ("FROM  a.example\r\n (b.example [203.0.113.12])\r\n BY mx.example", "203.0.113.12"),
    ("from 1.2.3.4.example.net (HELO only) by mx.example; Thu, 26 Nov 2026 10:00:00 +0000", None),
    ("by mx.example with ESMTP id 1; Thu, 26 Nov 2026 10:00:00 +0000", None),
    ("from mx.example by other.example (203.0.113.99)", None),  # an address in the by clause is not the sender's
    (PICKUP_HOP, None),
])
def test_received_from_ip(value: str, expected: str | None) -> None:
    found = received_from_ip(value)
    assert found == (ip_address(expected) if expected else None)


@pytest.mark.parametrize(("value", "expected"), [
    ("from x (" + "a" * 250_000 + " [203.0.113.13]) by mx.example", "203.0.113.13"),  # 10 KB of it once took 1 s
    ("from " + "f" * 250_000 + " by mx.example", None),
    ("from x ([" + "[" * 250_000 + "203.0.113.14]) by mx.example", "203.0.113.14"),
    ("from " + "(" * 100_000 + " by mx.example", None),
])
def test_a_hostile_received_line_is_read_in_one_pass(value: str, expected: str | None) -> None:
    """A Received field as long as the receive connector's MaxHeaderSize lets in (256 KB) is read in time
    proportional to its length (the guard only catches a hang)."""
    found = returns_within(60, received_from_ip, value)
    assert found == (ip_address(expected) if expected else None)


def test_external_connection_is_its_own_origin() -> None:
    assert originating_ip("203.0.113.50", INTERNAL, [EXCHANGE_HOP]) == ip_address("203.0.113.50")
    assert originating_ip("::ffff:203.0.113.51", INTERNAL, []) == ip_address("203.0.113.51")


def test_internal_relay_walks_received_newest_first() -> None:
    received = [
        "from HUB02.contoso.com (192.0.2.25) by HUB01.contoso.com (198.51.100.20)",  # internal hop: skipped
        EXCHANGE_HOP,  # from 198.51.100.10: internal range, skipped
        POSTFIX_HOP,  # the first other from-IP wins
        "from spoofed.example ([203.0.113.66]) by mail.fabrikam.example",
    ]
    assert originating_ip("198.51.100.20", INTERNAL, received) == ip_address("203.0.113.7")


def test_pickup_lines_and_lines_without_an_address_are_skipped() -> None:
    received = [PICKUP_HOP, "by mx.example with ESMTP", "from client.example (unknown [IPv6:2001:db8::9]) by x"]
    assert originating_ip("2001:db8:1::5", INTERNAL, received) == ip_address("2001:db8::9")


def test_none_when_every_hop_is_internal() -> None:
    assert originating_ip("192.0.2.25", INTERNAL, [EXCHANGE_HOP, PICKUP_HOP]) is None
    assert originating_ip("192.0.2.25", INTERNAL, []) is None


def test_internal_servers_parsing() -> None:
    assert is_internal(ip_address("198.51.100.77"), INTERNAL)
    assert not is_internal(ip_address("192.0.2.26"), INTERNAL)
    assert parse_internal_servers([" 192.0.2.1/24 "])[0].with_prefixlen == "192.0.2.0/24"
    with pytest.raises(ValueError, match="not-an-ip"):
        parse_internal_servers(["not-an-ip"])
