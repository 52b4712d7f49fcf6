"""The content filter reads a plain single-part message's Content-Type itself: it must read what the standard
library's `email.message.Message` reads, for every field it does not hand over to it."""

from __future__ import annotations

import pytest

from agents import MailItem
from agents.content_filter.message import _leaves, _message_leaves, _plain_part, _single_part

BODY = "caf\u00e9 \u2014 50 \u20ac\r\nsecond line\r\n".encode("utf-8") + b"\xff raw byte\r\n"

FIELDS = [
    [],
    [("Content-Type", "text/plain")],
    [("Content-Type", "TEXT/HTML")],
    [("Content-Type", "text/plain; charset=utf-8")],
    [("Content-Type", "text/plain; charset=\"ISO-8859-1\"")],
    [("Content-Type", "text/plain;charset=latin-1;")],
    [("Content-Type", "text/plain ;  CHARSET = Windows-1252 ; ")],
    [("Content-Type", "text/plain; charset=no-such-charset")],
    [("Content-Type", "text/plain; charset=\"utf-8")],
    [("Content-Type", "text/plain; charset=utf-8\"")],
    [("Content-Type", "text/plain; charset=<utf-8>")],
    [("Content-Type", "text/plain; charset=")],
    [("Content-Type", "text/plain; charset=\"\"")],
    [("Content-Type", "text/plain; charset*=utf-8''latin-1")],
    [("Content-Type", "text/plain; charset*0=lat; charset*1=in-1")],
    [("Content-Type", "text/plain; format=flowed; charset=utf-8")],
    [("Content-Type", "text/plain; name=run.exe")],
    [("Content-Type", "text/plain; name*=utf-8''r%C3%A9sum%C3%A9.exe")],
    [("Content-Type", "text/pl\"ain; charset=utf-8")],
    [("Content-Type", "te\"xt/pl\"ain; charset=utf-8")],
    [("Content-Type", "text/plain; charset=\"a;b\"")],
    [("Content-Type", "text/plain; charset=\"utf\\-8\"")],
    [("Content-Type", "text")],
    [("Content-Type", "text/plain/extra; charset=utf-8")],
    [("Content-Type", "")],
    [("Content-Type", ";charset=utf-8")],
    [("Content-Type", "text/plain; charset=ut\u00e9f-8")],
    [("Content-Type", "text/plain; charset=a\x00b")],  # no codec can be named so: read as UTF-8, not raised on
    [("Content-Type", "text/pl\u00e4in")],
    [("Content-Type", "text/html; charset=utf-8"), ("Content-Type", "text/plain; charset=latin-1")],
    [("Content-Type", "text/plain; charset=utf-8"), ("Content-Transfer-Encoding", "8bit")],
    [("Content-Type", "text/plain; charset=utf-8"), ("Content-Transfer-Encoding", "7BIT")],
    [("Content-Type", "text/plain; charset=utf-8"), ("Content-Transfer-Encoding", "Base64")],
    [("Content-Type", "text/plain; charset=utf-8"), ("Content-Transfer-Encoding", "quoted-printable")],
    [("Content-Type", "text/plain; charset=utf-8"), ("Content-Transfer-Encoding", "x-uue")],
    [("Content-Type", "text/plain; charset=utf-8"), ("Content-Transfer-Encoding", "bogus")],
    [("Content-Transfer-Encoding", "base64")],
    [("Content-Disposition", "attachment; filename=a.exe")],
    [("Content-Type", "application/octet-stream"), ("Content-Disposition", "inline")],
    [("Content-Type", "application/pdf; charset=utf-8")],
]


def _item(fields: list[tuple[str, str]], body: bytes) -> MailItem:
    head = "".join(f"{name}: {value}\r\n" for name, value in [("From", "a@x.example"), *fields])
    raw = head.encode("utf-8") + b"\r\n" + body
    return MailItem("a@x.example", [], raw)


def _read(leaves) -> list[tuple]:
    return [(kind, filename, disposition, text()) for kind, filename, disposition, text in leaves]


@pytest.mark.parametrize("body", [BODY, b"", b"plain ascii\r\n"])
@pytest.mark.parametrize("fields", FIELDS, ids=[repr(f)[:60] for f in FIELDS])
def test_a_single_part_reads_as_the_standard_library_reads_it(fields: list[tuple[str, str]], body: bytes) -> None:
    item = _item(fields, body)
    content = item.content()
    assert _read(_leaves(item, content)) == _read(_message_leaves([_single_part(item, content)]))


def test_the_shortcut_serves_the_common_fields() -> None:
    assert _plain_part(_item([], b"")) == ("text/plain", None)
    assert _plain_part(_item([("Content-Type", 'text/html; charset="UTF-8"'),
                              ("Content-Transfer-Encoding", "8bit")], b"")) == ("text/html", "utf-8")
    assert _plain_part(_item([("Content-Type", "text/plain; format=flowed")], b"")) is None
