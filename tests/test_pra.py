"""RFC 4407 PRA extraction: the 18 cases tabled in shared/reference/spf-senderid-pra.md §7, then mailbox parsing."""

from __future__ import annotations

import pytest

from agents.senderid.pra import PraResult, _parse_tokens, find_pra, parse_mailboxes

RECEIVED = ("Received", "from a.example by b.example; Thu, 26 Nov 2026 10:00:00 +0000")

TABLE = [
    ("1 single From", [("From", "a@x.example")], "a@x.example", "From"),
    ("2 Sender wins over From", [("Sender", "s@y.example"), ("From", "a@x.example")], "s@y.example", "Sender"),
    ("3 two Senders: no fallback to From",
     [("Sender", "s1@y.example"), ("Sender", "s2@y.example"), ("From", "a@x.example")], None, None),
    ("4 blank Sender is ignored", [("Sender", "   "), ("From", "a@x.example")], "a@x.example", "From"),
    ("5 two From fields", [("From", "a@x.example"), ("From", "b@x.example")], None, None),
    ("6 one From, two mailboxes", [("From", "a@x.example, b@x.example")], None, "From"),
    ("7 empty group", [("From", "undisclosed-recipients:;")], None, "From"),
    ("8 address literal", [("From", "a@[192.0.2.1]")], None, "From"),
    ("9 Resent-Sender of the same block",
     [("Resent-From", "r@z.example"), ("Resent-Sender", "rs@z.example"), RECEIVED, ("From", "a@x.example")],
     "rs@z.example", "Resent-Sender"),
    ("10 Received between: older Resent-Sender skipped",
     [("Resent-From", "r@z.example"), RECEIVED, ("Resent-Sender", "old@w.example"), RECEIVED,
      ("From", "a@x.example")], "r@z.example", "Resent-From"),
    ("11 Return-Path between works like Received",
     [("Resent-From", "r@z.example"), ("Return-Path", "<bounce@w.example>"), ("Resent-Sender", "old@w.example"),
      ("From", "a@x.example")], "r@z.example", "Resent-From"),
    ("12 Resent-Sender without any Resent-From",
     [("Resent-Sender", "rs@z.example"), ("Sender", "s@y.example"), ("From", "a@x.example")],
     "rs@z.example", "Resent-Sender"),
    ("13 first Resent-From wins",
     [("Resent-From", "r1@z.example"), RECEIVED, ("Resent-From", "r2@w.example"), ("Sender", "s@y.example")],
     "r1@z.example", "Resent-From"),
    ("14 blank Resent-Sender ignored",
     [("Resent-Sender", ""), ("Resent-From", "r@z.example"), ("From", "a@x.example")], "r@z.example", "Resent-From"),
    ("15 malformed selected field: no fallback",
     [("Resent-Sender", "rs1@z.example, rs2@z.example"), ("From", "a@x.example")], None, "Resent-Sender"),
    ("16 steps 3-4 never run once a Resent-From is found",
     [("Resent-From", "r@z.example"), ("Sender", "s1@y.example"), ("Sender", "s2@y.example")],
     "r@z.example", "Resent-From"),
    ("17 case-insensitive, folded names and values",
     [("rEsEnT-fRoM", "Resent\r\n Person\r\n\t<r1@z.example>"), RECEIVED, ("Resent-From", "r2@w.example"),
      ("Sender", "s@y.example")], "r1@z.example", "Resent-From"),
    ("18 no candidate field", [("To", "t@x.example"), ("Subject", "hello")], None, None),
]


@pytest.mark.parametrize(("headers", "address", "header"), [case[1:] for case in TABLE], ids=[c[0] for c in TABLE])
def test_rfc4407_table(headers: list[tuple[str, str]], address: str | None, header: str | None) -> None:
    result = find_pra(headers)
    assert (result.address, result.header) == (address, header)
    assert (result.reason is None) == (address is not None)


def test_result_exposes_the_domain_and_a_reason() -> None:
    assert find_pra([("From", "Joe <joe@Fabrikam.example>")]).domain == "Fabrikam.example"
    none = find_pra([("From", "a@x.example"), ("From", "b@x.example")])
    assert none == PraResult(None, None, "more than one From field") and none.domain is None


@pytest.mark.parametrize(("value", "mailbox"), [
    ("John Doe <jdoe@machine.example>", ("jdoe", "machine.example")),
    ('"Joe Q. Public" <john.q.public@example.com>', ("john.q.public", "example.com")),
    ('"Doe, John" <j@x.example>', ("j", "x.example")),
    ("=?utf-8?q?Doe,_John?= <j@x.example>", ("j", "x.example")),
    ("=?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>", ("PIRARD", "vm1.ulg.ac.be")),
    ("Jöhn Düe <j@x.example>", ("j", "x.example")),
    (r"Pete(A nice \) chap) <pete(his account)@silly.test(his host)>", ("pete", "silly.test")),
    ("a@x.example (Alice, the sender)", ("a", "x.example")),
    ('"john doe"@example.com', ('"john doe"', "example.com")),
    ('"john"@example.com', ("john", "example.com")),
    ('"a@b"@example.com', ('"a@b"', "example.com")),
    ("<@relay.example,@other.example:user@example.com>", ("user", "example.com")),
    ("Friends: one@example.com;", ("one", "example.com")),
    ("jdoe@test  . example", ("jdoe", "test.example")),
])
def test_single_mailbox_forms(value: str, mailbox: tuple[str, str]) -> None:
    assert parse_mailboxes(value) == [mailbox]


def test_lists_and_groups() -> None:
    value = 'Mary Smith <mary@x.test>, jdoe@example.org, "Giant; \\"Big\\" Box" <sysservices@example.net>'
    assert parse_mailboxes(value) == [("mary", "x.test"), ("jdoe", "example.org"), ("sysservices", "example.net")]
    group = "A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;"
    assert [domain for _, domain in parse_mailboxes(group)] == ["a.test", "where.test", "one.test"]
    assert parse_mailboxes("Undisclosed recipients:;") == []


@pytest.mark.parametrize("value", [
    "no-at-sign", "a@b@c.example", '"unterminated@x.example', "(open comment a@x.example", "<a@x.example",
    "a@x.example>", "Group: a@x.example", "John a@x.example", "<a@x.example> trailing", "a@", "@x.example",
    "a@x..example",
])
def test_malformed_values_raise(value: str) -> None:
    with pytest.raises(ValueError):
        parse_mailboxes(value)


def test_a_comment_only_field_counts_as_present_but_holds_no_mailbox() -> None:
    result = find_pra([("Sender", "(nobody)"), ("From", "a@x.example")])
    assert result.address is None and result.header == "Sender"


def _long_way(value: str) -> object:
    try:
        return _parse_tokens(value)
    except ValueError as e:
        return f"ValueError: {e}"


@pytest.mark.parametrize("value", [
    "a@x.example", "  a@x.example \r\n", "\r\n a@x.example", "\x1ca@x.example\x1f", "A.B+tag@Sub.X.Example",
    "!#$%&'*+/=?^_`{|}~-@x.example", "=?utf-8?q?a.b?=@x.example", "a@=?x?q?y.z?=", "a.@x.example", ".a@x.example",
    "a..b@x.example", "a@x.example.", "a@b@x.example", "a\u00a0b@x.example", "a\u2028@x.example", "é@x.example",
    "a@x.exa\r\n mple", "a @x.example", "a@x.example ,", "a@[192.0.2.1]", '"a"@x.example', "",
])
def test_the_bare_address_shortcut_agrees_with_the_tokenizer(value: str) -> None:
    try:
        fast: object = parse_mailboxes(value)
    except ValueError as e:
        fast = f"ValueError: {e}"
    assert fast == _long_way(value)
