"""transport.core.headers: the cheap header view and byte-exact edits, for CRLF and LF messages and odd shapes."""

from __future__ import annotations

import pytest

from transport.core.headers import (
    append_headers, decode_value, format_field, header_end, parse_headers, prepend_headers, remove_headers,
)
from transport.core.mailitem import MailItem, Recipient

CRLF_MSG = (b"Received: from a.test by b.test;\r\n\tMon, 1 Jan 2024 00:00:00 +0000\r\n"
            b"From: John <john@fabrikam.test>\r\n"
            b"Subject: Hello\r\n"
            b"\r\n"
            b"Body line\r\nFrom: not a header\r\n\r\nmore\r\n")
LF_MSG = CRLF_MSG.replace(b"\r\n", b"\n")


def body_of(raw: bytes) -> bytes:
    return raw[header_end(raw):]


# -- header_end -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw,end", [
    (b"A: 1\r\n\r\nbody", 8),
    (b"A: 1\n\nbody", 6),
    (b"\r\nbody only", 2),
    (b"\nbody only", 1),
    (b"A: 1\r\nB: 2\r\n", 12),  # no separator: everything is header
    (b"A: 1", 4),
    (b"", 0),
    (b"A: 1\r\n\r\nx\n\ny", 8),  # a LF pair in the body does not count
])
def test_header_end(raw, end):
    assert header_end(raw) == end


# -- parse ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [CRLF_MSG, LF_MSG], ids=["CRLF", "LF"])
def test_parse_names_values_and_spans(raw):
    fields = parse_headers(raw)
    assert [f.name for f in fields] == ["Received", "From", "Subject"]
    assert fields[0].value == "from a.test by b.test; Mon, 1 Jan 2024 00:00:00 +0000"  # unfolded
    assert fields[1].value == "John <john@fabrikam.test>"
    assert fields[2].key == "subject"
    # spans cover each field's lines exactly, folded lines included, and tile the header block
    assert raw[fields[0].start:fields[0].end].startswith(b"Received:")
    assert raw[fields[0].start:fields[0].end].count(b"\n") == 2
    assert fields[0].end == fields[1].start and fields[1].end == fields[2].start
    assert raw[fields[2].start:fields[2].end] in (b"Subject: Hello\r\n", b"Subject: Hello\n")


def test_parse_stops_at_the_blank_line():
    assert "not a header" not in [f.value for f in parse_headers(CRLF_MSG)]


def test_parse_odd_lines():
    raw = (b" orphan continuation\r\n"
           b"Subject : spaced colon\r\n"
           b"no colon here\r\n"
           b"X-Empty:\r\n"
           b"Bad Name: has a space\r\n"
           b"X-8bit: caf\xc3\xa9 \xff\r\n"
           b"\r\n")
    fields = parse_headers(raw)
    assert [(f.name, f.value) for f in fields] == [
        ("Subject", "spaced colon"), ("X-Empty", ""), ("X-8bit", "café \udcff")]


def test_parse_no_separator_and_empty():
    assert [f.name for f in parse_headers(b"A: 1\r\nB: 2")] == ["A", "B"]
    assert parse_headers(b"") == []
    assert parse_headers(b"\r\nA: 1\r\n") == []  # a body only


# -- format and fold ------------------------------------------------------------------------------------------


def test_format_short_field():
    assert format_field("X-Test", "value") == b"X-Test: value\r\n"
    assert format_field("X-Test", "value", b"\n") == b"X-Test: value\n"


@pytest.mark.parametrize("sep", ["; ", ", "])
def test_long_field_is_folded_under_998_octets(sep):
    value = sep.join(f"part{i:03d}=" + "v" * 40 for i in range(100))
    data = format_field("X-Long", value)
    lines = data.split(b"\r\n")
    assert lines[-1] == b"" and len(lines) > 2
    assert all(len(line) <= 998 for line in lines)
    assert all(line[:1] in (b" ", b"\t") for line in lines[1:-1])  # continuation lines start with white space
    # unfolding gives the value back
    [field] = parse_headers(data + b"\r\n")
    assert field.value == value


# -- prepend / append / remove -------------------------------------------------------------------------------


@pytest.mark.parametrize("raw,eol", [(CRLF_MSG, b"\r\n"), (LF_MSG, b"\n")], ids=["CRLF", "LF"])
def test_prepend_keeps_the_line_ending(raw, eol):
    out = prepend_headers(raw, [("Received", "from x by y"), ("X-First", "1")])
    assert out == b"Received: from x by y" + eol + b"X-First: 1" + eol + raw
    assert [f.name for f in parse_headers(out)][:3] == ["Received", "X-First", "Received"]


@pytest.mark.parametrize("raw,eol", [(CRLF_MSG, b"\r\n"), (LF_MSG, b"\n")], ids=["CRLF", "LF"])
def test_append_goes_before_the_blank_line(raw, eol):
    out = append_headers(raw, [("X-A", "1"), ("X-B", "2")])
    assert [f.name for f in parse_headers(out)] == ["Received", "From", "Subject", "X-A", "X-B"]
    assert b"Subject: Hello" + eol + b"X-A: 1" + eol + b"X-B: 2" + eol + eol + b"Body line" in out
    assert body_of(out) == body_of(raw)


@pytest.mark.parametrize("raw,expected", [
    (b"Subject: x\r\n", b"Subject: x\r\nX-A: 1\r\n\r\n"),
    (b"Subject: x", b"Subject: x\r\nX-A: 1\r\n\r\n"),
    (b"Subject: x\n", b"Subject: x\nX-A: 1\n\n"),
    (b"Subject: x\r\n\r\n", b"Subject: x\r\nX-A: 1\r\n\r\n"),
    (b"", b"X-A: 1\r\n\r\n"),
    (b"\r\nbody only\r\n", b"X-A: 1\r\n\r\nbody only\r\n"),
    (b"\nbody only\n", b"X-A: 1\n\nbody only\n"),
], ids=["no-separator", "no-final-eol", "no-separator-LF", "headers-only", "empty", "body-only", "body-only-LF"])
def test_append_odd_shapes(raw, expected):
    assert append_headers(raw, [("X-A", "1")]) == expected


@pytest.mark.parametrize("raw,expected", [
    (b"", b"X-A: 1\r\n"),
    (b"\nbody\n", b"X-A: 1\n\nbody\n"),
], ids=["empty", "body-only-LF"])
def test_prepend_odd_shapes(raw, expected):
    assert prepend_headers(raw, [("X-A", "1")]) == expected


@pytest.mark.parametrize("raw", [CRLF_MSG, LF_MSG], ids=["CRLF", "LF"])
def test_remove_is_case_blind_and_takes_folded_lines(raw):
    out = remove_headers(raw, ["RECEIVED", "subject"])
    assert [f.name for f in parse_headers(out)] == ["From"]
    assert b"Mon, 1 Jan 2024" not in out
    assert body_of(out) == body_of(raw)
    assert b"From: not a header" in out  # the body is never touched


def test_remove_every_occurrence_and_by_prefix():
    raw = (b"X-MS-Exchange-Organization-SCL: -1\r\nTo: a@b\r\nx-ms-exchange-organization-authas: Internal\r\n"
           b"X-MS-Exchange-Organization-SCL: 5\r\nX-MS-Exchange-Other: keep\r\n\r\nX-MS-Exchange-Organization-SCL: body\r\n")
    out = remove_headers(raw, ["X-MS-Exchange-Organization-"], prefix=True)
    assert out == b"To: a@b\r\nX-MS-Exchange-Other: keep\r\n\r\nX-MS-Exchange-Organization-SCL: body\r\n"
    assert remove_headers(raw, ["x-ms-exchange-organization-scl"]).count(b"Organization-SCL") == 1


def test_remove_nothing_returns_the_same_bytes():
    assert remove_headers(CRLF_MSG, ["X-Absent"]) is CRLF_MSG
    assert remove_headers(b"", ["Subject"]) == b""
    assert remove_headers(b"Subject: x", ["Subject"]) == b""


def test_decode_value():
    assert decode_value("=?utf-8?q?Caf=C3=A9_ouvert?=") == "Café ouvert"
    assert decode_value("plain") == "plain"
    assert decode_value("=?bogus?x?zz?=") == "=?bogus?x?zz?="


# -- through the mail item ------------------------------------------------------------------------------------


def test_mail_item_edits_invalidate_the_view():
    item = MailItem("john@fabrikam.test", [Recipient("alice@contoso.com")], LF_MSG)
    assert item.subject == "Hello" and item.message_id == ""
    item.set_header("Subject", "=?utf-8?q?Bonjour_=C3=A0_tous?=")
    item.set_header("Message-ID", "<x@y>")
    assert item.subject == "Bonjour à tous" and item.message_id == "<x@y>"
    assert item.header_values("subject") == ["=?utf-8?q?Bonjour_=C3=A0_tous?="]
    assert b"\r\n" not in item.raw  # an LF message stays LF
    item.remove_headers(["Received"])
    assert item.header("Received") is None and item.size == len(item.raw)
    assert body_of(item.raw) == body_of(LF_MSG)


@pytest.mark.parametrize("raw", [b"Subject: a\r\nFrom: b@c\r\n\r\nbody\r\n", b"Subject: a\nX: y\n\nbody\n",
                                 b"Subject: a\r\n", b"", b"\r\nbody", b"Subject: a\r\n folded\r\nTo: x\r\n\r\n.\r\n"])
def test_mail_item_edits_keep_the_parsed_view_in_step(raw):
    """A mail item parses its headers once; every edit must leave the view equal to a fresh parse."""
    import random

    from transport.core.mailitem import MailItem

    rnd = random.Random(raw)
    item = MailItem("s@x", [], raw)
    for step in range(60):
        op = rnd.choice(["prepend", "append", "remove", "set", "prefix"])
        name = rnd.choice(["Received", "X-MS-Exchange-Organization-SCL", "Subject", "X-A", "To"])
        if op == "prepend":
            item.prepend_headers([(name, f"v{step}"), ("X-A", "p")])
        elif op == "append":
            item.append_headers([(name, f"v{step}")])
        elif op == "remove":
            item.remove_headers([name])
        elif op == "set":
            item.set_header(name, f"s{step}")
        else:
            item.remove_headers(["X-MS-Exchange-"], prefix=True)
        assert item.headers == parse_headers(item.raw), (op, name)
    assert body_of(item.raw) == body_of(raw)  # the body (whatever follows the header block) never changes


@pytest.mark.parametrize("raw", [b"Subject: a\r\nFrom: b@c\r\n\r\nbody\r\n", b"Subject: a\nX-A: y\n\nbody\n",
                                 b"Subject: a\r\n", b"", b"\r\nbody", b"Subject: a\r\nX-A: b", b"X-A: b",
                                 b"Subject: a\r\n folded\r\nX-A: x\r\n\r\n.\r\n", b"junk line\r\nX-A: 1\r\n\r\nb"])
def test_one_edit_gives_what_the_removal_the_prepend_and_the_append_give_one_after_the_other(raw):
    """`edit_headers` does an agent's stamps in one walk; bytes and view must be those of the three edits
    made one by one, whatever the shape of the header block (no blank line, no line end, odd lines)."""
    from transport.core.headers import fields_named
    from transport.core.mailitem import MailItem

    one, steps = MailItem("s@x", [], raw), MailItem("s@x", [], raw)
    one.edit_headers(fields_named(["x-a", "Subject"]), prepend=[("Received", "r"), ("X-B", "1")], append=[("X-A", "n")])
    steps.remove_headers(["X-A", "subject"])
    steps.prepend_headers([("Received", "r"), ("X-B", "1")])
    steps.append_headers([("X-A", "n")])
    assert one.raw == steps.raw
    assert one.headers == steps.headers == parse_headers(one.raw)
    names = [(h.name, h.value) for h in one.headers]
    assert names[:2] == [("Received", "r"), ("X-B", "1")] and names[-1] == ("X-A", "n")
    assert not any(n in ("Subject", "X-A") for n, _ in names[2:-1])
