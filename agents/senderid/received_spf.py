"""Header values that report a Sender ID / SPF verdict: Exchange's ``Received-SPF`` and RFC 8601
``Authentication-Results``.

Both return one unfolded line (the header writer folds it). Everything that came from the sender — the HELO name,
the PRA, the MAIL FROM — is sanitised: control characters dropped, comment text escaped, and key values written as a
dot-atom or a quoted-string, so a hostile HELO cannot inject fields or break the syntax.

``Received-SPF`` follows the shape Exchange stamps (reference §3.4): the status with Exchange's capitalisation, a
comment ``(<receiver>: <sentence>)`` with one sentence per status, then ``receiver=...; client-ip=...; helo=...;``.
The sentences for Pass, Fail, SoftFail, Neutral and None are the ones seen in Exchange-stamped mail; those for
TempError, PermError and the two Fail sub-statuses without a policy decision are ours, in the same style.
"""

from __future__ import annotations

import ipaddress
import re

from .pra import PraResult
from .spf import DOMAIN_DOES_NOT_EXIST, MALFORMED_DOMAIN

__all__ = ["EXCHANGE_STATUS", "authentication_results", "received_spf"]

#: check_host result → the status name Exchange stamps (X-MS-Exchange-Organization-SenderIdResult, Received-SPF).
EXCHANGE_STATUS = {
    "pass": "Pass", "neutral": "Neutral", "softfail": "SoftFail", "fail": "Fail", "none": "None",
    "temperror": "TempError", "permerror": "PermError",
}

_SENTENCES = {
    "pass": "domain of {who} designates {ip} as permitted sender",
    "fail": "domain of {who} does not designate {ip} as permitted sender",
    MALFORMED_DOMAIN: "domain of {who} is malformed",
    DOMAIN_DOES_NOT_EXIST: "domain of {who} does not exist",
    "softfail": "domain of transitioning {who} discourages use of {ip} as permitted sender",
    "neutral": "{ip} is neither permitted nor denied by domain of {who}",
    "none": "{who} does not designate permitted sender hosts",
    "temperror": "error in processing during lookup of domain of {who}",
    "permerror": "domain of {who} publishes an invalid SPF policy",
}

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_COMMENT_SPECIAL = re.compile(r"([()\\])")


def _clean(text: str) -> str:
    return _CONTROL.sub("", text)


def _value(text: str, *, address: bool = False) -> str:
    """A key's value: bare when it is a dot-atom or an IP address (or, with ``address``, a dot-atom addr-spec),
    else a quoted-string."""
    text = _clean(text)
    local, at, domain = text.rpartition("@")
    if (_DOT_ATOM.fullmatch(text) or (address and at and _DOT_ATOM.fullmatch(local) and _DOT_ATOM.fullmatch(domain))
            or _is_ip(text)):  # the IP test last: it is the dearest
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _is_ip(text: str) -> bool:
    if ":" not in text and not text.replace(".", "").isdigit():
        return False  # without a colon only dotted digits can be an address: spare ipaddress its ValueError
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _comment(text: str) -> str:
    return _COMMENT_SPECIAL.sub(r"\\\1", _clean(text))


def received_spf(
    result: str, *, receiver: str, client_ip: str, helo: str, pra: str | None, fail_reason: str | None = None,
) -> str:
    """The ``Received-SPF:`` value for a Sender ID verdict on the PRA ``pra`` (None: no PRA could be found).

    ``result`` is the check_host result (``fail`` …); ``fail_reason`` the Fail sub-status, where it is not
    NotPermitted (MalformedDomain, DomainDoesNotExist).
    """
    if pra is None:
        sentence = "no purported responsible address found"
    else:
        sentence = _SENTENCES[fail_reason if result == "fail" and fail_reason in _SENTENCES else result]
        sentence = sentence.format(who=pra, ip=client_ip)
    comment = _comment(f"{receiver}: {sentence}")
    return (f"{EXCHANGE_STATUS[result]} ({comment}) receiver={_value(receiver)}; client-ip={_value(client_ip)};"
            f" helo={_value(helo)};")


def authentication_results(
    authserv_id: str,
    *,
    sender_id: str | None = None,
    pra: PraResult | None = None,
    spf: str | None = None,
    mail_from: str | None = None,
    helo: str | None = None,
) -> str:
    """An ``Authentication-Results:`` value (RFC 8601) with a ``sender-id=`` and/or an ``spf=`` method.

    ``sender-id`` is reported with ``header.<field>=<PRA>`` (the field that supplied the PRA), or a ``reason`` when
    there was none; ``spf`` with ``smtp.mailfrom`` for a MAIL FROM check, else ``smtp.helo`` for a HELO check.
    Results are the lower-case check_host names (never the obsolete ``hardfail``).
    """
    methods = []
    if sender_id is not None:
        if pra is not None and pra.address is not None and pra.header is not None:
            methods.append(f"sender-id={sender_id} header.{pra.header.lower()}={_value(pra.address, address=True)}")
        else:
            reason = pra.reason if pra is not None and pra.reason else "no purported responsible address"
            methods.append(f"sender-id={sender_id} reason={_value(reason)}")
    if spf is not None:
        if mail_from:
            methods.append(f"spf={spf} smtp.mailfrom={_value(mail_from, address=True)}")
        else:
            methods.append(f"spf={spf} smtp.helo={_value(helo or '')}")
    return f"{_value(authserv_id)}; " + ("; ".join(methods) if methods else "none")
