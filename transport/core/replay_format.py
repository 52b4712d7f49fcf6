"""The replay file format: the envelope written as X-headers in front of the message.

Exchange's Export-Message and foreign gateways write files the Replay directory resubmits exactly as they say:

    X-Sender: <sender@contoso.com> BODY=8BITMIME RET=HDRS ENVID=abc AUTH=<>
    X-Receiver: <alice@contoso.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice@contoso.com
    X-CreatedBy: MSExchange15
    X-HeloDomain: mail.fabrikam.com
    X-SourceIPAddress: 192.0.2.1
    X-EndOfInjectedXHeaders: 254
    Received: ...                       (the message itself, byte for byte)

One X-Sender (`<>` for a null reverse path) with the MAIL FROM parameters, one X-Receiver per recipient with
its RCPT parameters. X-CreatedBy says who wrote the file (missing: Unspecified). Exchange trusts any file
marked MSExchange15; this hub trusts only the files it wrote itself, marked `MSExchange15 (<its FQDN>)`, so a
file exported elsewhere cannot bring organisation headers in. X-EndOfInjectedXHeaders closes the block; its
value is the byte count of the injected lines before it (readers here only use it as the end marker).
`serialize` is what `transport message export` writes, so export → replay round-trips.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from . import headers as hdr
from .errors import TransportError
from .mailitem import MailItem, Recipient, SessionInfo, Source

__all__ = ["CREATED_BY", "ReplayFormatError", "InjectedHeaders", "ReplayFile", "created_by", "read_injected", "parse",
           "serialize"]

CREATED_BY = "MSExchange15"
"""Exchange's X-CreatedBy value for files a transport server wrote."""

MAIL_PARAMS = ("BODY", "RET", "ENVID", "AUTH", "SMTPUTF8")
RCPT_PARAMS = ("NOTIFY", "ORCPT")
INJECTED = frozenset(("x-sender", "x-receiver", "x-createdby", "x-endofinjectedxheaders", "x-helodomain",
                      "x-sourceipaddress", "x-source", "x-extendedmessageprops"))


class ReplayFormatError(TransportError, ValueError):
    """The file's X-header envelope is missing or malformed; the message says what is wrong."""


@dataclass(slots=True)
class InjectedHeaders:
    """The leading X-header block: what it says, and where the message content starts (`end`)."""

    sender: str | None = None
    mail_params: dict[str, str] = field(default_factory=dict)
    recipients: list[Recipient] = field(default_factory=list)
    created_by: str = ""
    helo: str = ""
    source_ip: str = ""
    end: int = 0


@dataclass(slots=True)
class ReplayFile:
    """A parsed replay file: the mail item (envelope, session facts, content) and who wrote the file."""

    item: MailItem
    created_by: str

    def written_by(self, server: str) -> bool:
        """Whether the hub named `server` wrote this file (then it is trusted: no header firewall)."""
        return self.created_by == created_by(server)


def created_by(server: str) -> str:
    """The X-CreatedBy value a hub writes: Exchange's marker, with the hub's FQDN as a comment."""
    return f"{CREATED_BY} ({server})"


def _path_and_params(value: str, allowed: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """`<addr> KEY=value …` (or a bare address) → address and the known parameters, keys upper-cased."""
    value = value.strip()
    if value.startswith("<"):
        close = value.find(">")
        if close < 0:
            raise ReplayFormatError(f"cannot read the address in {value!r}")
        address, rest = value[1:close], value[close + 1:]
    else:
        address, _, rest = value.partition(" ")
    params = {}
    for word in rest.split():
        key, _, param = word.partition("=")
        if key.upper() in allowed:
            params[key.upper()] = param
    return address.strip(), params


def read_injected(data: bytes) -> InjectedHeaders:
    """Read the injected X-headers at the top of the file (none is fine: `end` is 0 then).

    A leading run of such names without X-Sender, X-Receiver or X-EndOfInjectedXHeaders is not an envelope
    (some servers put an `X-Source:` first) and is left in the message.
    """
    found = InjectedHeaders()
    if data[:2].lower() != b"x-":
        return found
    closed = False
    for h in hdr.parse_headers(data):
        if h.key not in INJECTED:
            found.end = h.start
            break
        found.end = h.end
        if h.key == "x-sender":
            if found.sender is not None:
                raise ReplayFormatError("the file has more than one X-Sender")
            found.sender, found.mail_params = _path_and_params(h.value, MAIL_PARAMS)
        elif h.key == "x-receiver":
            address, params = _path_and_params(h.value, RCPT_PARAMS)
            if "@" not in address:
                raise ReplayFormatError(f"X-Receiver {h.value!r} holds no SMTP address")
            found.recipients.append(Recipient(address, params))
        elif h.key == "x-createdby":
            found.created_by = h.value
        elif h.key == "x-helodomain":
            found.helo = h.value
        elif h.key == "x-sourceipaddress":
            found.source_ip = "" if h.value == "0.0.0.0" else h.value
        elif h.key == "x-endofinjectedxheaders":
            closed = True
            break
    if not (closed or found.sender is not None or found.recipients):
        return InjectedHeaders()
    return found


def parse(data: bytes) -> ReplayFile:
    """A replay file as a mail item: the envelope from X-Sender / X-Receiver, the content after the block.

    To, Cc and From play no part in delivery. Raises ReplayFormatError when the envelope is incomplete.
    """
    found = read_injected(data)
    if found.sender is None:
        raise ReplayFormatError("the file has no X-Sender header before the message")
    if found.sender and "@" not in found.sender:
        raise ReplayFormatError(f"X-Sender <{found.sender}> is not an SMTP address")
    if not found.recipients:
        raise ReplayFormatError("the file has no X-Receiver header before the message")
    item = MailItem(sender=found.sender, recipients=found.recipients, raw=data[found.end:], source=Source.REPLAY,
                    mail_params=found.mail_params,
                    session=SessionInfo(helo=found.helo, client_ip=found.source_ip, esmtp=True))
    return ReplayFile(item, found.created_by or "Unspecified")


def _with_params(address: str, params: dict[str, str], order: tuple[str, ...]) -> str:
    words = [f"<{address}>"] + [f"{k}={params[k]}" if params[k] else k for k in order if k in params]
    return " ".join(words)


def serialize(item: MailItem, server: str) -> bytes:
    """The item as a replay file (what Export-Message writes), marked as written by the hub named `server`.

    One X-Receiver per recipient still pending: delivered or failed ones are left out, or a replay would
    deliver them twice.
    """
    rcpts = item.pending()
    if not rcpts:
        raise ValueError("a replay file needs at least one recipient still to deliver")
    fields = [("X-Sender", _with_params(item.sender, item.mail_params, MAIL_PARAMS))]
    fields += [("X-Receiver", _with_params(r.address, r.params, RCPT_PARAMS)) for r in rcpts]
    fields.append(("X-CreatedBy", created_by(server)))
    if item.session.helo:
        fields.append(("X-HeloDomain", item.session.helo))
    if item.session.client_ip:
        fields.append(("X-SourceIPAddress", item.session.client_ip))
    content = item.content()
    count = len(hdr.prepend_headers(content, fields)) - len(content)
    return hdr.prepend_headers(content, [*fields, ("X-EndOfInjectedXHeaders", str(count))])
