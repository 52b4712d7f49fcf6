"""The wizard's questions on a terminal, step by step as the original wizard asked them.

The interview only gathers :class:`~agents.senderid.wizard.Answers`; everything after that is the same code the
flags drive, which is why an interactive session and its flags (printed at the end) give the same record.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from .wizard import AllPolicy, Answers, Survey

__all__ = ["interview"]

_SEPARATORS = re.compile(r"[\s,;]+")


def _yes(ask: Callable[[str], str], question: str, default: bool) -> bool:
    choices = "[Y/n]" if default else "[y/N]"
    while True:
        reply = ask(f"{question} {choices} ").strip().lower()
        if not reply:
            return default
        if reply in ("y", "yes", "n", "no"):
            return reply.startswith("y")


def _items(ask: Callable[[str], str], question: str) -> list[str]:
    return [item for item in _SEPARATORS.split(ask(question).strip()) if item]


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def interview(found: Survey, ask: Callable[[str], str] = input) -> Answers:
    """Ask which surveyed servers send, which others and which providers do, or that none does; and how strict."""
    domain = found.domain
    if not _yes(ask, f"Does {domain} send mail at all?", True):
        return Answers(no_mail=True, pra=_yes(ask, "Publish a Sender ID record (spf2.0/pra) too?", False))
    hosts: list[str] = []
    for mx in found.mx:
        shown = ", ".join(mx.addresses) or "no address"
        if _yes(ask, f"Does the mail server {mx.host} ({shown}) send mail for {domain}?", True):
            hosts.append(mx.host)
    if found.addresses and _yes(ask, f"Does {domain} itself ({', '.join(found.addresses)}) send mail?", False):
        hosts.append(domain)
    ips: list[str] = []
    for item in _items(ask, "Other servers that send mail for it (IP addresses, networks or host names; "
                            "Enter for none): "):
        (ips if _is_network(item) else hosts).append(item)
    includes = _items(ask, "Providers that send for it (the domain their instructions say to include:; "
                           "Enter for none): ")
    strict = _yes(ask, "Fail mail from every other server (-all)? No soft-fails it (~all).", False)
    pra = _yes(ask, "Publish a Sender ID record (spf2.0/pra) too?", False)
    return Answers(tuple(ips), tuple(hosts), tuple(includes), False,
                   AllPolicy.FAIL if strict else AllPolicy.SOFTFAIL, pra)
