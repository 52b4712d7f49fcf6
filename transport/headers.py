"""The header block of a raw message: a cheap parsed view, and edits applied to the bytes.

Raw bytes are the truth. Parsing the whole MIME tree with :mod:`email` costs milliseconds; the hot path
only needs the header fields, so this module finds the end of the header block once and splits it into
fields with their byte spans. Edits (prepend, remove, replace) splice the raw bytes and never
re-serialise what they did not touch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from typing import Iterable, Sequence

__all__ = ["Header", "header_end", "parse_headers", "prepend_headers", "remove_headers", "decode_value"]


@dataclass(frozen=True, slots=True)
class Header:
    """One header field: its name as written, its unfolded value, and where its lines sit in the raw bytes."""

    name: str
    value: str
    start: int
    end: int

    @property
    def key(self) -> str:
        return self.name.lower()


def header_end(raw: bytes) -> int:
    """Offset of the first byte after the blank line ending the header block (len(raw) if there is none)."""
    if raw.startswith((b"\r\n", b"\n")):
        return 2 if raw.startswith(b"\r\n") else 1
    crlf = raw.find(b"\r\n\r\n")
    lf = raw.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf + 4
    if lf >= 0:
        return lf + 2
    return len(raw)


def parse_headers(raw: bytes) -> list[Header]:
    """Split the header block into fields; lines that are neither a field nor a continuation are skipped."""
    end = header_end(raw)
    fields: list[Header] = []
    pos = 0
    name = value = None
    start = 0
    while pos < end:
        nl = raw.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl + 1
        line = raw[pos:line_end]
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and name is not None:
            value += " " + line.strip().decode("utf-8", "surrogateescape")
        else:
            if name is not None:
                fields.append(Header(name, value, start, pos))
                name = None
            colon = line.find(b":")
            if colon > 0 and b" " not in line[:colon].rstrip(b" \t"):
                name = line[:colon].rstrip(b" \t").decode("ascii", "replace")
                value = line[colon + 1:].strip().decode("utf-8", "surrogateescape")
                start = pos
        pos = line_end
    if name is not None:
        fields.append(Header(name, value, start, pos))
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


def prepend_headers(raw: bytes, fields: Sequence[tuple[str, str]]) -> bytes:
    """Put fields at the top of the header block, in the order given (trace headers go first)."""
    eol = _eol(raw)
    return b"".join(format_field(n, v, eol) for n, v in fields) + raw


def append_headers(raw: bytes, fields: Sequence[tuple[str, str]]) -> bytes:
    """Put fields at the end of the header block, just before the blank line."""
    eol = _eol(raw)
    block = b"".join(format_field(n, v, eol) for n, v in fields)
    end = header_end(raw)
    if end == len(raw) and not raw.endswith((b"\r\n\r\n", b"\n\n")):
        sep = b"" if raw.endswith((b"\r\n", b"\n")) or not raw else eol
        return raw + sep + block + eol
    body_sep = 2 if raw[end - 2:end] == b"\r\n" else 1
    return raw[: end - body_sep] + block + raw[end - body_sep:]


def remove_headers(raw: bytes, names: Iterable[str], prefix: bool = False) -> bytes:
    """Drop every field whose name is in names (or starts with one, when prefix is set), case-insensitively."""
    keys = tuple(n.lower() for n in names)
    parts, pos = [], 0
    for field in parse_headers(raw):
        hit = field.key.startswith(keys) if prefix else field.key in keys
        if hit:
            parts.append(raw[pos:field.start])
            pos = field.end
    if not parts:
        return raw
    parts.append(raw[pos:])
    return b"".join(parts)


def decode_value(value: str) -> str:
    """An RFC 2047 encoded value as text (for subjects and display names in logs)."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # malformed encoded words: show them as they are
        return value
