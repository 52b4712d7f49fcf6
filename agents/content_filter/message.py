"""What the rules read: one parsed view of a message, made once per scan so no rule parses it again.

The body is parsed with the standard library's ``compat32`` policy (the fast one, see DESIGN.md) and reduced to
what the rules need: the text a reader sees (HTML with its tags removed), whether there is a plain-text part, the
URLs and the attachment file names.
"""

from __future__ import annotations

import bisect
import email
import html
import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from typing import Callable, Iterable
from urllib.parse import urlsplit

from agents import MailItem
from transport.core.headers import addresses, decode_value, header_end

__all__ = ["MessageView", "first_address"]

_PART_FIELDS = ("Content-Type", "Content-Transfer-Encoding", "Content-Disposition")
# No pattern here can scan past the next "<": markup from a hostile sender (`<a href=` repeated, no ">" in
# sight) then costs time in proportion to its length, not to its square or cube.
_TAG = re.compile(r"<[^<>]*>")
_URL = re.compile(r"https?://[^\s\"'<>()]+", re.IGNORECASE)
_ANCHOR_OPEN = re.compile(r"<a\s[^<>]*>", re.IGNORECASE)
_ANCHOR_CLOSE = re.compile(r"</a\s*>", re.IGNORECASE)
_HREF = re.compile(r"""href\s*=\s*["']?([^"'\s<>]+)""", re.IGNORECASE)


def url_host(url: str) -> str:
    """A link's host name, lower-cased; "" when it has none or cannot be parsed (`http://[oops/`): a spammer's
    malformed link must not stop the scan."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def first_address(item: MailItem, name: str) -> tuple[str, str]:
    """(display name, address) of the first mailbox in a header, decoded; empty strings when there is none."""
    pairs = addresses(decode_value(v) for v in item.header_values(name))
    return next(((n, a.lower()) for n, a in pairs if "@" in a), ("", ""))


def _visible(markup: str) -> str:
    """HTML as a reader sees its text: tags out, entities decoded."""
    return html.unescape(_TAG.sub(" ", markup))


def _links(markup: str) -> list[tuple[str, str]]:
    """(href, the text a reader sees) of each link: an opening tag with an href and what runs to the next closing
    tag (an opening tag inside a link's text is part of that text). The closing tags are found once and each
    opening tag looks its own up, so unclosed links cost no rescan of the rest of the message."""
    closes = list(_ANCHOR_CLOSE.finditer(markup))
    starts = [c.start() for c in closes]
    links: list[tuple[str, str]] = []
    resume = 0  # where the last link's closing tag ended
    for tag in _ANCHOR_OPEN.finditer(markup):
        if tag.start() < resume:  # inside the last link's text
            continue
        href = _HREF.search(tag.group())
        if href is None:
            continue
        i = bisect.bisect_left(starts, tag.end())
        if i == len(starts):  # no closing tag after this one, so none after any later one either
            break
        links.append((href.group(1), " ".join(_visible(markup[tag.end():starts[i]]).split())))
        resume = closes[i].end()
    return links


def _urls(text: str) -> list[str]:
    """The links in a text; the regex (case-insensitive, so without a literal to jump to) runs only on a text
    that holds "://" at all."""
    return _URL.findall(text) if "://" in text else []


_ENCODED = frozenset({"quoted-printable", "base64", "x-uuencode", "uuencode", "uue", "x-uue"})
_CHARSET_ONLY = re.compile(r";\s*charset\s*=\s*(\"?)([A-Za-z0-9!#$%&'+.^_`{|}~-]+)\1\s*;?\s*", re.IGNORECASE)

Leaf = tuple[str, str | None, str | None, Callable[[], str]]
"""A part that is not a container: (content type, file name, disposition, its decoded text when asked)."""


def _leaves(item: MailItem, content: bytes) -> Iterable[Leaf]:
    """The message's parts that hold content. A message that is not multipart is its own only part: read from
    the header fields the item has already parsed when they are plain (no disposition, no transfer encoding to
    undo, at most a charset parameter), else built as a `Message` from those fields and the body; either way it
    costs no second parse of the header block and no line-by-line read of the body."""
    kind = (item.header("Content-Type") or "").lstrip().lower()
    if kind.startswith(("multipart/", "message/")):
        return _message_leaves(email.message_from_bytes(content, policy=policy.compat32).walk())
    plain = _plain_part(item)
    if plain is None:
        return _message_leaves([_single_part(item, content)])
    body = content[header_end(content):]
    return [(plain[0], None, None, lambda: _decode(body, plain[1]))]


def _plain_part(item: MailItem) -> tuple[str, str | None] | None:
    """(content type, charset) of a single-part message as `email.message.Message` reads them, when its fields
    are that simple (ASCII, no Content-Disposition, no transfer encoding to undo, no parameter but charset);
    None for anything else, which the standard library then reads."""
    ctype, cte = item.header("Content-Type") or "", item.header("Content-Transfer-Encoding") or ""
    if item.header("Content-Disposition") is not None or cte.lower() in _ENCODED or not (ctype + cte).isascii():
        return None
    kind, semicolon, params = ctype.partition(";")
    charset = None
    if semicolon:
        found = _CHARSET_ONLY.fullmatch(semicolon + params)
        if found is None or '"' in kind:  # a quote before the ';' would change where the parameters start
            return None
        charset = found.group(2).lower()
    kind = kind.strip().lower()
    return (kind if kind.count("/") == 1 else "text/plain"), charset


def _single_part(item: MailItem, content: bytes) -> Message:
    """A message that is not multipart as the standard library's one part, from the item's parsed fields."""
    part = Message()
    for name in _PART_FIELDS:
        for value in item.header_values(name):
            part[name] = value
    part.set_payload(content[header_end(content):].decode("ascii", "surrogateescape"))  # as the parser holds it
    return part


def _message_leaves(parts: Iterable[Message]) -> Iterable[Leaf]:
    for part in parts:
        if not part.is_multipart():
            yield (part.get_content_type(), part.get_filename(), part.get_content_disposition(),
                   lambda part=part: _decode(part.get_payload(decode=True) or b"", part.get_content_charset()))


def _decode(payload: bytes, charset: str | None) -> str:
    try:
        return payload.decode(charset or "utf-8", "replace")
    except (LookupError, ValueError):  # an unknown charset name, or one no codec name can be (a NUL in it)
        return payload.decode("utf-8", "replace")


@dataclass(slots=True)
class MessageView:
    """The facts of one message the rules judge, with the stamps earlier agents left on it."""

    item: MailItem
    subject: str
    from_name: str
    from_address: str
    reply_to_address: str
    text: str = ""                     # subject, plain text and HTML text, as a reader sees them
    has_plain: bool = False
    has_html: bool = False
    urls: set[str] = field(default_factory=set)
    links: list[tuple[str, str]] = field(default_factory=list)  # (href, the text a reader sees) of each HTML link
    attachments: list[str] = field(default_factory=list)
    _lowered: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, item: MailItem, content: bytes) -> "MessageView":
        """Parse `content` (the whole message: the caller keeps large ones out)."""
        from_name, from_address = first_address(item, "From")
        view = cls(item, item.subject, from_name, from_address, first_address(item, "Reply-To")[1])
        texts = [view.subject]
        try:
            leaves = list(_leaves(item, content))
        except RecursionError:  # parts nested deeper than the standard library's parser recurses: one text part
            body = content[header_end(content):]
            leaves = [("text/plain", None, None, lambda: _decode(body, None))]
        for kind, filename, disposition, text in leaves:
            if filename or disposition == "attachment":
                view.attachments.append(decode_value(filename or ""))
                continue
            if kind == "text/plain":
                view.has_plain = True
                body = text()
            elif kind == "text/html":
                view.has_html = True
                raw = text()
                view.urls.update(_urls(raw))  # href targets count, not only the visible text
                view.links += _links(raw)
                body = _visible(raw)
            else:
                continue
            view.urls.update(_urls(body))
            texts.append(body)
        view.text = "\n".join(texts)
        return view

    @property
    def lowered(self) -> str:
        """The text in lower case, for the phrase rules: made when one first asks (without phrases, never)."""
        if self._lowered is None:
            self._lowered = self.text.lower()
        return self._lowered

    @property
    def sender_domain(self) -> str:
        return self.from_address.rpartition("@")[2]
