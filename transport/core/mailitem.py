"""The mail item: the one object that travels from receive through the queues to delivery.

It carries the envelope (MAIL FROM and its parameters, each recipient with its parameters and status), the
session facts, the raw content as bytes with a lazily parsed header view, the stamps agents leave (SCL,
Sender ID result, …) and the history of verdicts. Everything here is plain data so the queue store can
persist it as JSON next to the raw bytes.
"""

from __future__ import annotations

import enum
import time
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from . import headers as hdr

__all__ = ["Source", "AuthAs", "RecipientStatus", "Recipient", "SessionInfo", "Verdict", "Stamp", "ReverseDns", "MailItem", "SCL_HEADER", "Spool"]


class Source(str, enum.Enum):
    """Where the message entered the hub (the tracking log's `source`)."""

    SMTP = "SMTP"
    PICKUP = "PICKUP"
    REPLAY = "REPLAY"
    AGENT = "AGENT"
    STOREDRIVER = "STOREDRIVER"
    DSN = "DSN"  # a delivery status notification the hub generated


class AuthAs(str, enum.Enum):
    """How the session is trusted: X-MS-Exchange-Organization-AuthAs."""

    ANONYMOUS = "Anonymous"
    INTERNAL = "Internal"
    EXTERNAL = "External"
    PARTNER = "Partner"


class RecipientStatus(str, enum.Enum):
    READY = "Ready"
    DELIVERED = "Delivered"
    FAILED = "Failed"
    DEFERRED = "Deferred"


@dataclass(slots=True)
class Recipient:
    """An envelope recipient with its RCPT parameters (NOTIFY, ORCPT) and where it stands."""

    address: str
    params: dict[str, str] = field(default_factory=dict)
    status: RecipientStatus = RecipientStatus.READY
    response: str = ""
    next_hop: str = ""

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()


@dataclass(slots=True)
class SessionInfo:
    """What the receiving side knew about the peer when the message came in."""

    session_id: str = ""
    client_ip: str = ""
    client_port: int = 0
    server_ip: str = ""
    server_port: int = 0
    helo: str = ""
    esmtp: bool = False
    tls: bool = False
    auth_user: str = ""
    auth_mechanism: str = ""
    auth_as: AuthAs = AuthAs.ANONYMOUS
    internal: bool = False  # the peer is listed in internal_smtp_servers
    connector: str = ""  # the receive connector that took the session (tracking connector-id)
    client_hostname: str = ""  # the client's verified host name, when known (XCLIENT NAME)
    antispam_bypass: bool = False  # ms-Exch-Bypass-Anti-Spam: the connector's permission groups grant it
    on_allow_list: bool = False  # IsOnAllowList: the IP Allow list or an allow list provider lists the client
    on_block_list: bool = False  # IsOnBlockList: the IP Block list lists the client
    reverse_dns: str = ""  # a ReverseDns value once the reverse DNS agent has looked (Received header remark)

    @property
    def authenticated(self) -> bool:
        return bool(self.auth_user)


class Stamp(str, enum.Enum):
    """Names of the results agents leave on a mail item (`item.stamps[Stamp.PRD]`), beside the typed SCL."""

    PRD = "PRD"                            # Sender ID's purported responsible domain
    SENDER_ID_RESULT = "SenderIdResult"    # Pass, Neutral, SoftFail, Fail, None, TempError, PermError
    QUARANTINE = "Quarantine"              # the quarantined recipients: {address: why}
    DNS_LIST_HITS = "DnsListHits"           # StampStatus list providers that list the client IP, by name
    ORIGINAL_CLIENT_IP = "OriginalClientIp"
    SENDER_BLOCKED = "SenderBlocked"        # Sender filter StampStatus: Microsoft.Exchange.SenderBlocked
    REVERSE_DNS = "ReverseDns"              # the reverse DNS agent's ReverseDns result, for the content filter
    ANTISPAM_BYPASS = "AntispamBypass"      # why anti-spam was skipped (IPOnAllowList, …), the Antispam-Report word
    SCL_RULES = "SclRules"                  # the content filter's scan: {scl, score, rules: [{name, weight, …}]}; not stored
    GENERATED_BY = "GeneratedMessageSource" # the agent that submitted this message (never handed back to it)
    AGENT_HOPS = "AgentHopCount"            # agent-submitted messages in the chain that led to this one
    CAUSE = "Cause"                         # the message whose event the agent was handling when it submitted


class ReverseDns(str, enum.Enum):
    """The reverse DNS check of the HELO name (Exchange 2003's "Perform reverse DNS lookup")."""

    VERIFIED = "verified"          # a forward-confirmed PTR name equals the HELO/EHLO domain
    UNVERIFIED = "unverified"      # PTR names exist but none is forward-confirmed and equal to the HELO domain
    FAILED = "RDNS failed"         # no PTR record, or the lookup failed


SCL_HEADER = hdr.ORGANIZATION_HEADER_PREFIX + "SCL"
SCL_RANGE = range(-1, 10)


@dataclass(slots=True, frozen=True)
class Verdict:
    """One agent's recorded decision: which agent, at which event, what it did and why."""

    agent: str
    event: str
    action: str
    reason: str = ""
    response: str = ""


_UNSTORED_STAMPS = frozenset({Stamp.SCL_RULES})
"""Stamps the queue store does not keep: only `transport trace` reads them, in the process that made them."""
_SESSION_FIELDS = tuple(f.name for f in fields(SessionInfo))
_VERDICT_FIELDS = tuple(f.name for f in fields(Verdict))


def new_message_id(domain: str) -> str:
    return f"<{uuid.uuid4()}@{domain}>"


@dataclass(frozen=True, slots=True)
class Spool:
    """The body of a large message, kept in a file (see `transport.spool`) rather than in memory."""

    path: Path
    size: int

    def read(self) -> bytes:
        return self.path.read_bytes()


@dataclass(slots=True)
class MailItem:
    """A message in flight. `raw` is the truth; `headers` is parsed once and kept in step by every edit.

    For a large message `raw` holds the header block only and `spool` the body's file: edits of headers never
    copy the body, and `content()` gives the whole message where one is needed whole.
    """

    sender: str
    recipients: list[Recipient]
    raw: bytes
    source: Source = Source.SMTP
    mail_params: dict[str, str] = field(default_factory=dict)
    session: SessionInfo = field(default_factory=SessionInfo)
    stamps: dict[str, Any] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    internal_id: int = 0
    received_at: float = field(default_factory=time.time)
    _scl: int | None = field(default=None, repr=False)
    _headers: list[hdr.Header] | None = field(default=None, repr=False)
    stored_raw: bytes | None = field(default=None, repr=False, compare=False)  # what the queue store holds
    spool: Spool | None = field(default=None, compare=False)
    _read: tuple[bytes, str, str] | None = field(default=None, repr=False, compare=False)  # raw, Message-ID, subject

    # -- header view ---------------------------------------------------------------------------------
    @property
    def headers(self) -> list[hdr.Header]:
        if self._headers is None:
            self._headers = hdr.parse_headers(self.raw)
        return self._headers

    def header(self, name: str) -> str | None:
        """The first value of a header field, or None."""
        key = name.lower()
        for h in self.headers:
            if h.key == key:
                return h.value
        return None

    def header_values(self, name: str) -> list[str]:
        key = name.lower()
        return [h.value for h in self.headers if h.key == key]

    @property
    def message_id(self) -> str:
        return self._facts()[1]

    @property
    def subject(self) -> str:
        """The subject as text for logs and tables (raw 8-bit bytes that are not UTF-8 show as U+FFFD)."""
        return self._facts()[2]

    def _facts(self) -> tuple[bytes, str, str]:
        """(raw, Message-ID, subject), read once while the bytes stay the same: every tracking and agent-log row
        of a message repeats them, and a message's rows come among other messages' rows."""
        read = self._read
        if read is None or read[0] is not self.raw:
            subject = hdr.decode_value(self.header("Subject") or "")
            read = self._read = (self.raw, self.header("Message-ID") or "",
                                 subject.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        return read

    @property
    def size(self) -> int:
        return len(self.raw) + (self.spool.size if self.spool is not None else 0)

    def content(self) -> bytes:
        """The whole message as bytes (reads a spooled body from its file)."""
        return self.raw if self.spool is None else self.raw + self.spool.read()

    # -- header edits (applied to the raw bytes) ------------------------------------------------------
    def edit_headers(self, drop: Callable[[hdr.Header], bool] | None = None,
                     prepend: Sequence[tuple[str, str]] = (), append: Sequence[tuple[str, str]] = ()) -> None:
        """Remove the fields `drop` is true of, put `prepend` at the top of the header block (trace headers go
        first) and `append` at its end, in one edit (`hdr.fields_named` makes a `drop` of field names)."""
        self.raw, self._headers = hdr.HeaderEditor.edit(self.raw, self.headers, drop, prepend, append)

    def prepend_headers(self, fields: Sequence[tuple[str, str]]) -> None:
        self.edit_headers(prepend=fields)

    def append_headers(self, fields: Sequence[tuple[str, str]]) -> None:
        self.edit_headers(append=fields)

    def remove_headers(self, names: Iterable[str], prefix: bool = False) -> None:
        self.edit_headers(hdr.fields_named(names, prefix))

    def set_header(self, name: str, value: str) -> None:
        """Replace every field of that name by one (added at the end of the header block)."""
        self.set_headers([(name, value)])

    def set_headers(self, fields: Sequence[tuple[str, str]]) -> None:
        """Replace every field of these names by the ones given (added at the end of the header block, in order),
        in one edit."""
        self.edit_headers(hdr.fields_named([name for name, _ in fields]), append=fields)

    # -- Spam Confidence Level ------------------------------------------------------------------------
    @property
    def scl(self) -> int | None:
        """The Spam Confidence Level, -1 (trusted) to 9, or None while no agent has set one."""
        return self._scl

    @scl.setter
    def scl(self, value: int | None) -> None:
        """Set the SCL and write it as X-MS-Exchange-Organization-SCL (or remove that header for None)."""
        if value is None:
            self._scl = None
            self.remove_headers([SCL_HEADER])
        else:
            self.set_scl(value)

    def set_scl(self, value: int, fields: Sequence[tuple[str, str]] = ()) -> None:
        """Set the SCL and write its header, replacing `fields` too in the same edit of the header block (an
        agent's SCL comes with its report fields)."""
        if not isinstance(value, int) or value not in SCL_RANGE:
            raise ValueError(f"an SCL is a whole number from -1 to 9, not {value!r}")
        self._scl = value
        self.set_headers([(SCL_HEADER, str(value)), *fields])

    # -- recipients -----------------------------------------------------------------------------------
    def pending(self) -> list[Recipient]:
        return [r for r in self.recipients if r.status in (RecipientStatus.READY, RecipientStatus.DEFERRED)]

    def quarantine(self, addresses: Iterable[str], reason: str) -> None:
        """Send these recipients' copies to the quarantine mailbox instead (kept as `stamps[Stamp.QUARANTINE]`)."""
        marked = self.stamps.setdefault(Stamp.QUARANTINE, {})
        marked.update({a.lower(): reason for a in addresses})

    def quarantine_reason(self, address: str) -> str | None:
        """Why this recipient was quarantined, or None when it was not."""
        marked = self.stamps.get(Stamp.QUARANTINE)
        return marked.get(address.lower()) if marked else None

    def record(self, verdict: Verdict) -> None:
        self.verdicts.append(verdict)

    # -- persistence ----------------------------------------------------------------------------------
    def __getstate__(self) -> tuple:
        """Pickled (a receive worker hands every message to the hub's process so) as plain tuples, not as
        nested objects: a third of the time to pickle, half the time to unpickle. The unstored stamps stay in the
        process that made them, as they do out of the queue store."""
        s = self.session
        stamps = self.stamps if _UNSTORED_STAMPS.isdisjoint(self.stamps) else {
            k: v for k, v in self.stamps.items() if k not in _UNSTORED_STAMPS}
        return (self.sender, [(r.address, r.params, r.status.value, r.response, r.next_hop) for r in self.recipients],
                self.raw, self.source.value, self.mail_params, [getattr(s, k) for k in _SESSION_FIELDS], stamps,
                [(v.agent, v.event, v.action, v.reason, v.response) for v in self.verdicts], self.internal_id,
                self.received_at, self._scl, None if self._headers is None else [tuple(h) for h in self._headers],
                self.stored_raw, self.spool)

    def __setstate__(self, state: tuple) -> None:
        (self.sender, recipients, self.raw, source, self.mail_params, session, self.stamps, verdicts,
         self.internal_id, self.received_at, self._scl, headers, self.stored_raw, self.spool) = state
        self.recipients = [Recipient(a, p, RecipientStatus(st), r, h) for a, p, st, r, h in recipients]
        self.source = Source(source)
        self.session = SessionInfo(*session)
        self.verdicts = [Verdict(*v) for v in verdicts]
        self._headers = None if headers is None else [hdr.as_header(h) for h in headers]
        self._read = None

    def envelope_dict(self) -> dict[str, Any]:
        """Everything but the raw bytes (and the unstored stamps), as JSON-ready data."""
        return {
            "sender": self.sender,
            "mail_params": self.mail_params,
            "recipients": [
                {"address": r.address, "params": r.params, "status": r.status.value,
                 "response": r.response, "next_hop": r.next_hop}
                for r in self.recipients
            ],
            "source": self.source.value,
            "session": {k: getattr(self.session, k) for k in _SESSION_FIELDS} | {"auth_as": self.session.auth_as.value},
            "scl": self._scl,
            "stamps": {k: v for k, v in self.stamps.items() if k not in _UNSTORED_STAMPS},
            "verdicts": [{k: getattr(v, k) for k in _VERDICT_FIELDS} for v in self.verdicts],
            "received_at": self.received_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], raw: bytes, internal_id: int = 0) -> "MailItem":
        session = dict(data.get("session") or {})
        session["auth_as"] = AuthAs(session.get("auth_as", "Anonymous"))
        return cls(
            sender=data["sender"],
            recipients=[
                Recipient(r["address"], r.get("params", {}), RecipientStatus(r.get("status", "Ready")),
                          r.get("response", ""), r.get("next_hop", ""))
                for r in data["recipients"]
            ],
            raw=raw,
            source=Source(data.get("source", "SMTP")),
            mail_params=data.get("mail_params", {}),
            session=SessionInfo(**session),
            stamps=data.get("stamps", {}),
            verdicts=[Verdict(**v) for v in data.get("verdicts", [])],
            internal_id=internal_id,
            received_at=data.get("received_at", time.time()),
            _scl=data.get("scl"),
        )
