"""The header block of a raw message: a cheap parsed view, and edits applied to the bytes.

Raw bytes are the truth. Parsing the whole MIME tree with :mod:`email` costs milliseconds; the hot path
only needs the header fields, so this module finds the end of the header block once and splits it into
fields with their byte spans. Edits (prepend, remove, replace) splice the raw bytes and never
re-serialise what they did not touch.
"""

from __future__ import annotations

import functools
import re
import time
from email.header import decode_header, make_header
from email.utils import formatdate, getaddresses
from typing import Callable, Iterable, NamedTuple, Sequence

__all__ = ["not_a_message", "ORGANIZATION_HEADER_PREFIX", "FOREST_HEADER_PREFIX", "SERVER_VERSION", "Header", "as_header", "HeaderEditor", "header_end", "parse_headers", "prepend_headers", "append_headers",
           "remove_headers", "fields_named", "decode_value", "format_field", "date_now", "addresses"]

ORGANIZATION_HEADER_PREFIX = "X-MS-Exchange-Organization-"
"""Exchange's organisation headers: trusted stamps (SCL, AuthAs, …) that anonymous senders may not bring."""
FOREST_HEADER_PREFIX = "X-MS-Exchange-Forest-"
"""Exchange's forest headers, kept from anonymous senders by the header firewall like the organisation's."""
GENERATED_MESSAGE_SOURCE = ORGANIZATION_HEADER_PREFIX + "Generated-Message-Source"
"""The agent that submitted a message (Exchange stamps X-MS-Exchange-Generated-Message-Source the same way)."""
SERVER_VERSION = "15.20.0.0"
"""The version this hub writes where Exchange writes its build (Received lines, tracking log headers)."""


class Header(NamedTuple):
    """One header field: its name as written, its unfolded value, where its lines sit in the raw bytes, and
    its lower-cased name (`key`, kept because every look-up compares it). A tuple: messages carry dozens of
    these and every edit re-creates the ones it moves."""

    name: str
    value: str
    start: int
    end: int
    key: str

    def shifted(self, by: int) -> "Header":
        return as_header((self.name, self.value, self.start + by, self.end + by, self.key))


as_header = functools.partial(tuple.__new__, Header)
"""Header(fields) from a tuple, without the Python-level __new__ of a NamedTuple: edits make every header of a
message anew, and a mail item unpickled in the hub's process makes them all."""


def header_end(raw: bytes) -> int:
    """Offset of the first byte after the blank line ending the header block (len(raw) if there is none)."""
    if raw.startswith((b"\r\n", b"\n")):
        return 2 if raw.startswith(b"\r\n") else 1
    crlf = raw.find(b"\r\n\r\n")
    lf = raw.find(b"\n\n", 0, len(raw) if crlf < 0 else crlf + 1)  # only a LF pair before the CRLF pair counts
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf + 4
    if lf >= 0:
        return lf + 2
    return len(raw)


def not_a_message(raw: bytes) -> str | None:
    """Why a file is no message at all (empty, CR-only line ends, no header field first), or None."""
    if not raw.strip():
        return "the file is empty" if not raw else "the file holds only white space"
    if b"\n" not in raw and b"\r" in raw:
        return "the file's lines end in CR alone (old Mac line endings); a message's lines end in CRLF or LF"
    name, colon, _ = raw.split(b"\n", 1)[0].partition(b":")
    if not colon or not name or not all(33 <= c <= 126 for c in name):
        return "the file is not a message: it does not start with a header field (Name: value)"
    if b"\x00" in raw[:header_end(raw)]:
        return "the file is not a message: its header block holds a NUL byte"
    return None


def parse_headers(raw: bytes) -> list[Header]:
    """Split the header block into fields; lines that are neither a field nor a continuation are skipped."""
    end = header_end(raw)
    lines = raw[:end].split(b"\n")
    if not lines[-1]:
        lines.pop()  # the empty rest after the block's last line end
    fields: list[Header] = []
    pos = start = 0
    name = value = None
    for line in lines:
        if line in (b"\r", b""):  # the blank line
            break
        if line[:1] in (b" ", b"\t") and name is not None:
            value += " " + line.strip().decode("utf-8", "surrogateescape")
        else:
            if name is not None:
                fields.append(as_header((name, value, start, pos, name.lower())))
                name = None
            colon = line.find(b":")
            if colon > 0 and b" " not in line[:colon].rstrip(b" \t"):
                name = line[:colon].rstrip(b" \t").decode("ascii", "replace")
                value = line[colon + 1:].strip().decode("utf-8", "surrogateescape")
                start = pos
        pos = min(pos + len(line) + 1, end)  # the last line may have no line end
    if name is not None:
        fields.append(as_header((name, value, start, pos, name.lower())))
    return fields


def _eol(raw: bytes) -> bytes:
    """The line ending the message already uses, so inserted lines match it."""
    nl = raw.find(b"\n")
    return b"\n" if nl >= 0 and raw[nl - 1:nl] != b"\r" else b"\r\n"  # nl == 0: a LF body with no headers


def format_field(name: str, value: str, eol: bytes = b"\r\n") -> bytes:
    """One header field as bytes, folded at commas/semicolons when it would exceed 998 octets."""
    data = f"{name}: {value}".encode("utf-8", "surrogateescape")
    if len(data) <= 998:
        return data + eol
    out, line = [], b""
    for part in re.split(rb"(?<=[;,]) ", data):  # each part keeps its trailing ";" or ","
        if line and len(line) + 1 + len(part) > 900:
            out.append(line)
            line = b"\t" + part
        else:
            line = line + b" " + part if line else part
    out.append(line)
    return eol.join(out) + eol


def _insertion_point(raw: bytes) -> tuple[int, bytes, bytes]:
    """Where appended fields go (offset), and what goes before/after them when the block has no end yet."""
    end = header_end(raw)
    if end == len(raw) and not raw.endswith((b"\r\n\r\n", b"\n\n")):
        sep = b"" if raw.endswith((b"\r\n", b"\n")) or not raw else _eol(raw)
        return len(raw) + len(sep), sep, _eol(raw)
    return end - (2 if raw[end - 2:end] == b"\r\n" else 1), b"", b""


def prepend_headers(raw: bytes, fields: Sequence[tuple[str, str]]) -> bytes:
    """Put fields at the top of the header block, in the order given (trace headers go first)."""
    return HeaderEditor.edit(raw, [], prepend=fields)[0]  # no view to keep in step: nothing is parsed


def append_headers(raw: bytes, fields: Sequence[tuple[str, str]]) -> bytes:
    """Put fields at the end of the header block, just before the blank line."""
    return HeaderEditor.edit(raw, [], append=fields)[0]


def fields_named(names: Iterable[str], prefix: bool = False) -> Callable[[Header], bool]:
    """A test of a header field: its name is one of `names` (or starts with one, when prefix is set),
    case-insensitively."""
    keys = tuple(n.lower() for n in names)
    return (lambda h: h.key.startswith(keys)) if prefix else (lambda h: h.key in keys)


def remove_headers(raw: bytes, names: Iterable[str], prefix: bool = False) -> bytes:
    """Drop every field whose name is in names (or starts with one, when prefix is set), case-insensitively."""
    return HeaderEditor.edit(raw, parse_headers(raw), drop=fields_named(names, prefix))[0]


class HeaderEditor:
    """Edits that keep an already parsed header view in step with the bytes, so a message whose headers
    are stamped by several agents is parsed once, not once per stamp."""

    @staticmethod
    def _new(fields: Sequence[tuple[str, str]], at: int, eol: bytes) -> tuple[bytes, list[Header]]:
        """The fields as bytes and as the Headers a parse of them at offset `at` would give."""
        parts, made, pos = [], [], at
        for name, value in fields:
            data = format_field(name, value, eol)
            clean = value.strip()
            if clean != value or "\n" in clean or "\r" in clean or len(data) > 1000:  # folded or odd: parse it
                made += [h.shifted(pos) for h in parse_headers(data)]
            else:
                made.append(as_header((name, value, pos, pos + len(data), name.lower())))
            parts.append(data)
            pos += len(data)
        return b"".join(parts), made

    @classmethod
    def edit(cls, raw: bytes, headers: list[Header], drop: Callable[[Header], bool] | None = None,
             prepend: Sequence[tuple[str, str]] = (), append: Sequence[tuple[str, str]] = ()) -> tuple[bytes, list[Header]]:
        """Remove the fields `drop` is true of, put `prepend` at the top of the block and `append` at its end.

        One walk over the fields does the removal and moves the ones kept below the new top; an agent's stamps
        (remove the old, add the new, here and there) are one edit of the message, not one per kind of change.
        """
        eol = _eol(raw)
        top, kept = cls._new(prepend, 0, eol) if prepend else (b"", [])
        if drop is not None or top:
            parts, pos, shift = [top], 0, len(top)
            for h in headers:
                if drop is not None and drop(h):
                    parts.append(raw[pos:h.start])
                    pos = h.end
                    shift -= h.end - h.start
                else:
                    kept.append(as_header((h.name, h.value, h.start + shift, h.end + shift, h.key)) if shift else h)
            if pos or top:
                parts.append(raw[pos:])
                raw = b"".join(parts)
            headers = kept
        if append:
            at, sep, tail = _insertion_point(raw)
            block, made = cls._new(append, at, eol)
            raw = raw[:at - len(sep)] + sep + block + tail + raw[at - len(sep):]
            headers = headers + made
        return raw, headers


_date_cache: tuple[int, str] = (0, "")


def date_now() -> str:
    """The current time as an RFC 5322 date in GMT, for trace headers and banners (made once per second)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


def decode_value(value: str) -> str:
    """An RFC 2047 encoded value as text (for subjects and display names in logs)."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # malformed encoded words: show them as they are
        return value


def addresses(values: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """(display name, address) of every mailbox in these field values, as `email.utils.getaddresses` gives them;
    none for a value it cannot parse at all. Every reader of address fields goes through here.

    Several agents read the same From of a message; its parse is remembered rather than redone by each."""
    return _addresses(", ".join(values))


@functools.lru_cache(maxsize=1024)
def _addresses(joined: str) -> tuple[tuple[str, str], ...]:
    try:
        return tuple(getaddresses([joined]))
    except RecursionError:  # the standard library recurses once per nested comment: From: ((((… from a spammer
        return ()
