"""InternalSMTPServers (Set-TransportConfig): the organisation's own relays, by address or CIDR range.

A connection from one of them is not judged by its own address: the receive side marks the session internal,
and Sender ID walks the Received fields past them to the originating IP. IPv4-mapped IPv6 addresses count as IPv4.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

__all__ = ["IPAddress", "IPNetwork", "is_internal", "normalise", "parse_internal_servers", "client_address"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_internal_servers(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse entries such as ``192.0.2.25``, ``198.51.100.0/24``, ``2001:db8::/32``.

    Raises ValueError naming the first entry that is neither an address nor a CIDR range.
    """
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR range") from None
    return tuple(networks)


def normalise(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address as the IPv4 address it carries; any other address as it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=4096)
def client_address(text: str | IPAddress) -> IPAddress:
    """`normalise(ip_address(text))`, remembered: several agents parse a session's client IP for each message.

    Raises ValueError for what is not an IP address."""
    return normalise(ipaddress.ip_address(text))


def is_internal(address: str | IPAddress, internal_servers: Iterable[IPNetwork]) -> bool:
    """Whether the address is one of the internal servers (text that is not an address never is)."""
    if isinstance(address, str):
        try:
            address = ipaddress.ip_address(address)
        except ValueError:
            return False
    address = normalise(address)
    return any(address.version == n.version and address in n for n in internal_servers)
