"""Allow and block list providers (Add-IPBlockListProvider / Add-IPAllowListProvider): DNS lists (RFC 5782).

A client is looked up as ``<reversed IP>.<lookup domain>`` (four reversed octets for IPv4, 32 reversed nibbles for
IPv6); an A answer means listed, as the provider's match rule reads it: any answer (AnyMatch), an answer that
shares a bit with the mask in any byte (BitmaskMatch), or one of the listed addresses (IPAddressesMatch). NXDOMAIN
means not listed; a timeout or SERVFAIL means unknown, and an unknown answer never blocks (the message is not
lost for a list that does not answer).
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from transport.core.dns import DnsError, Resolver
from transport.core.internal_servers import IPAddress

__all__ = ["ListProvider", "ProviderAction", "ProviderMatch", "ProviderResult", "query_name", "look_up_all"]

DEFAULT_PROVIDER_REJECTION = "Recipient not authorized, your IP has been found on a block list"


class ProviderAction(str, enum.Enum):
    """What a block list provider's hit does: Exchange's (refuse the recipients), or, beyond Exchange, what the
    sender filter's StampStatus does for a blocked sender: stamp the message and let the content filter weigh it."""

    REJECT = "Reject"
    STAMP_STATUS = "StampStatus"


class ProviderMatch(str, enum.Enum):
    ANY = "AnyMatch"
    BITMASK = "BitmaskMatch"
    ADDRESSES = "IPAddressesMatch"


class ListProvider(BaseModel):
    """One DNS list provider."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Name of the provider (shown in replies as {1}, in logs and counters).")
    lookup_domain: str = Field(description="LookupDomain: the list's DNS zone, e.g. bl.contoso-demo.test.")
    enabled: bool = Field(True, description="Enabled: a disabled provider is not asked.")
    priority: int = Field(0, description="Priority: lower is asked (and counts) first.")
    any_match: bool | None = Field(None, description="AnyMatch: any A answer means listed (the default when no mask or addresses are given).")
    bitmask_match: str | None = Field(
        None, description="BitmaskMatch: listed when an answer shares a bit with this mask in any byte (0.0.0.4, or 4).")
    ip_addresses_match: list[str] = Field(default_factory=list, description="IPAddressesMatch: listed only for these exact answers (127.0.0.2, …).")
    rejection_response: str = Field(
        DEFAULT_PROVIDER_REJECTION, description="RejectionResponse (block lists): {0} is the IP, {1} the provider name, {2} the lookup domain.")
    action: ProviderAction = Field(
        ProviderAction.REJECT, description="Block lists: Reject (Exchange: the recipients are refused) or StampStatus "
        "(beyond Exchange: a soft list; the message is stamped and the content filter's dns_block_list rule adds weight).")

    @field_validator("lookup_domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        return value.strip().rstrip(".").lower()

    @field_validator("bitmask_match", mode="before")
    @classmethod
    def _mask(cls, value: Any) -> Any:
        if isinstance(value, int):
            value = str(ipaddress.IPv4Address(value))
        if value is not None:
            ipaddress.IPv4Address(value)  # raises ValueError for a mask that is not an IPv4 address
        return value

    @field_validator("ip_addresses_match")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        return [str(ipaddress.ip_address(v.strip())) for v in values]

    @model_validator(mode="after")
    def _one_rule(self) -> "ListProvider":
        if self.any_match and (self.bitmask_match or self.ip_addresses_match):
            raise ValueError("any_match cannot be combined with bitmask_match or ip_addresses_match: choose one rule")
        if self.bitmask_match and self.ip_addresses_match:
            raise ValueError("bitmask_match and ip_addresses_match are two rules: choose one")
        return self

    @property
    def match(self) -> ProviderMatch:
        if self.ip_addresses_match:
            return ProviderMatch.ADDRESSES
        return ProviderMatch.BITMASK if self.bitmask_match else ProviderMatch.ANY

    def listed(self, answers: tuple[str, ...]) -> bool:
        """Whether these A answers mean the IP is listed, by the provider's rule."""
        rule = self.match
        if rule is ProviderMatch.ADDRESSES:
            return any(a in self.ip_addresses_match for a in answers)
        if rule is ProviderMatch.BITMASK:
            mask = ipaddress.IPv4Address(self.bitmask_match).packed
            return any(any(a & m for a, m in zip(ipaddress.IPv4Address(ans).packed, mask)) for ans in answers)
        return bool(answers) and self.any_match is not False

    def rejection(self, ip: IPAddress) -> str:
        """The rejection text with {0} (IP), {1} (provider name) and {2} (lookup domain) filled in."""
        return (self.rejection_response.replace("{0}", str(ip)).replace("{1}", self.name)
                .replace("{2}", self.lookup_domain))


def query_name(ip: IPAddress, lookup_domain: str) -> str:
    """``2.0.0.127.<domain>`` for 127.0.0.2; the 32 reversed nibbles for an IPv6 address (RFC 5782 §2.1, §2.4)."""
    if ip.version == 4:
        labels = reversed(str(ip).split("."))
    else:
        labels = reversed(ip.exploded.replace(":", ""))
    return ".".join(labels) + "." + lookup_domain


@dataclass(frozen=True, slots=True)
class ProviderResult:
    """One provider's answer for one IP: `listed` is None when the list could not be asked (timeout, SERVFAIL)."""

    provider: ListProvider
    name: str
    answers: tuple[str, ...]
    listed: bool | None
    outcome: str


async def look_up(resolver: Resolver, provider: ListProvider, ip: IPAddress) -> ProviderResult:
    name = query_name(ip, provider.lookup_domain)
    try:
        answer = await resolver.lookup(name, "A")
    except DnsError as e:
        return ProviderResult(provider, name, (), None, f"TEMPERROR ({getattr(e, 'reason', e)})")
    records = tuple(str(r) for r in answer.records)
    return ProviderResult(provider, name, records, provider.listed(records), answer.rcode)


async def look_up_all(resolver: Resolver, providers: list[ListProvider], ip: IPAddress) -> list[ProviderResult]:
    """Every enabled provider asked at once (so one slow list costs one DNS timeout, not one per list), the
    results in priority order."""
    ordered = sorted((p for p in providers if p.enabled), key=lambda p: p.priority)
    if len(ordered) == 1:  # nothing to wait for at once: spare the task gather would make
        return [await look_up(resolver, ordered[0], ip)]
    return list(await asyncio.gather(*(look_up(resolver, p, ip) for p in ordered)))
