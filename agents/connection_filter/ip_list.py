"""IP Allow and IP Block list entries (Add-IPAllowListEntry / Add-IPBlockListEntry).

An entry is one address, a range written ``first-last``, or a CIDR block, IPv4 or IPv6, with an optional
``expiration_time`` after which it no longer counts and a comment. In YAML an entry is either the bare text
(``192.0.2.66``) or a mapping (``{ip_range: 198.51.100.0/24, expiration_time: 2027-01-01T00:00:00Z}``).
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from transport.core.internal_servers import IPAddress, normalise

__all__ = ["IPListEntry", "first_hit"]


class IPListEntry(BaseModel):
    """One IP list entry: an address, a range (``a-b``) or a CIDR block, optionally expiring."""

    model_config = ConfigDict(extra="forbid")

    ip_range: str = Field(description="IPAddress or IPRange: 192.0.2.66, 192.0.2.1-192.0.2.50, 198.51.100.0/24, 2001:db8::/32.")
    expiration_time: datetime | None = Field(None, description="ExpirationTime: the entry stops counting after this (UTC unless given).")
    comment: str = Field("", description="Comment shown with the entry.")
    _span: tuple[int, int, int] = PrivateAttr()  # (IP version, first, last) as integers

    @model_validator(mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return {"ip_range": value} if isinstance(value, str) else value

    @field_validator("expiration_time")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value

    @field_validator("ip_range")
    @classmethod
    def _parse(cls, value: str) -> str:
        _span_of(value)  # raises ValueError naming the entry
        return value.strip()

    def model_post_init(self, context: Any) -> None:
        self._span = _span_of(self.ip_range)

    def covers(self, version: int, value: int, now: datetime) -> bool:
        """Whether the entry lists the address (IP version, integer value) at `now` (an expired entry lists
        nothing); the caller turns the address into integers once for the whole list."""
        if self.expiration_time is not None and now >= self.expiration_time:
            return False
        listed, first, last = self._span  # a pydantic private attribute: one look-up, not three
        return version == listed and first <= value <= last


def _span_of(text: str) -> tuple[int, int, int]:
    text = text.strip()
    try:
        if "-" in text:
            low, high = (normalise(ipaddress.ip_address(p.strip())) for p in text.split("-", 1))
            if low.version != high.version or int(low) > int(high):
                raise ValueError
            return low.version, int(low), int(high)
        net = ipaddress.ip_network(text, strict=False)
        if isinstance(net, ipaddress.IPv6Network) and net.prefixlen == 128 and net.network_address.ipv4_mapped:
            mapped = net.network_address.ipv4_mapped
            return 4, int(mapped), int(mapped)
        return net.version, int(net.network_address), int(net.broadcast_address)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address, a range (first-last) or a CIDR block") from None


def first_hit(entries: list[IPListEntry], address: IPAddress, now: datetime | None = None) -> IPListEntry | None:
    """The first entry listing the address now, or None."""
    if not entries:
        return None
    now, version, value = now or datetime.now(timezone.utc), address.version, int(address)
    return next((e for e in entries if e.covers(version, value, now)), None)
