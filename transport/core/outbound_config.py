"""Outbound settings: send connectors (smart host, DNS MX routing, or a drop directory) and the delivery status
notifications the hub sends (Set-TransportConfig). `TransportConfig` holds them as `send_connectors` and `dsn`.

A send connector's queue is named for its next hop: the connector's name for a smart host or drop-directory
connector (one queue however many domains it serves), the destination domain for DNS routing (one queue per
domain). Connector names hold no dot, so the two never collide; `delivery_type` tells which a queue is, for
`transport queue list`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from .config_types import ByteSize, Duration, Model, ProtocolLoggingLevel

__all__ = ["DsnSettings", "SendConnector", "SmartHostAuth", "split_host", "queue_kind", "SMART_HOST", "DNS", "DROP"]

SMART_HOST, DNS, DROP = "SmartHostConnectorDelivery", "DnsConnectorDelivery", "NonSmtpGatewayDelivery"
"""Exchange's DeliveryType of each kind of send connector queue."""


class DsnSettings(Model):
    """Delivery status notifications (Set-TransportConfig): who sends them and what they return."""

    external_postmaster_address: str | None = Field(
        None, description="ExternalPostmasterAddress: the From of NDRs and other reports (null = postmaster@ the "
        "first accepted domain); the reports' envelope sender is always the null reverse path.")
    delay_dsn_enabled: bool = Field(
        True, description="ExternalDelayDsnEnabled: send a delay notice once a message has waited "
        "delay_notification_timeout (to recipients whose NOTIFY allows it).")
    max_original_size: ByteSize = Field(
        10 * 1024**2, description="A report returns the original whole up to this size; larger, its headers only.")


def split_host(text: str, default_port: int) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` → (host, port)."""
    text = text.strip()
    if text.startswith("["):
        name, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") if rest.startswith(":") else ("" if not rest else "x")
    elif text.count(":") == 1:
        name, _, port = text.partition(":")
    else:
        name, port = text, ""
    if not name or any(c.isspace() or c in "@<>,;/" for c in name) or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise ValueError(f"{text!r} is not host or host:port")
    return name, int(port) if port else default_port


class SendConnector(Model):
    """New-SendConnector: where mail for some address spaces goes (a smart host, the domain's MX, or a folder)."""

    name: str = Field(description="Send connector name: the queue of a smart host or drop-directory connector, "
                      "and the tracking log's connector-id.")
    address_spaces: list[str] = Field(
        ["*"], min_length=1, description='AddressSpaces: "*", "fabrikam.com" or "*.fabrikam.com" (the domain and '
        'its subdomains); of the connectors that match a recipient, the most specific wins.')
    smart_hosts: list[str] = Field(
        default_factory=list, description='SmartHosts: ["host:port", …] tried in order; empty = DNS routing to '
        'the destination\'s MX (A/AAAA when it has none).')
    port: int = Field(25, ge=1, le=65535, description="Port: the TCP port of MX hosts and of smart hosts given without one.")
    require_tls: bool = Field(
        False, description="RequireTLS: fail (and retry) when the next hop offers no STARTTLS; STARTTLS is used "
        "whenever offered either way.")
    auth: "SmartHostAuth | None" = Field(None, description="SmartHostAuthMechanism BasicAuth: {username, password} for the smart host.")
    max_connections_per_domain: int = Field(
        20, ge=1, description="MaxPerDomainOutboundConnections: connections at once to one next hop.")
    max_messages_per_connection: int = Field(
        20, ge=1, description="SmtpMaxMessagesPerConnection: messages sent over one connection before another is opened "
        "for a busy next hop (and before it is closed and opened anew).")
    connection_timeout: Duration = Field(
        60, gt=0, description="ConnectionInactivityTimeOut: the longest the hub waits for a reply from the next hop.")
    drop_directory: Path | None = Field(
        None, description="Foreign connector: write the messages as .eml files (X-Sender/X-Receiver envelope) into "
        "this folder under the data root, e.g. drop/Fax, instead of sending them.")
    drop_directory_quota: ByteSize | None = Field(
        None, description="DropDirectoryQuota: once the folder holds this much, messages wait in Retry (null = unlimited).")
    max_message_size: ByteSize = Field(
        10 * 1024**2, description="MaxMessageSize: larger messages fail with 550 5.3.4 (ROUTING.SizeLimit) instead of being sent.")
    protocol_logging_level: ProtocolLoggingLevel = Field(
        ProtocolLoggingLevel.NONE, description="ProtocolLoggingLevel: Verbose writes every command and reply of this "
        "connector's sessions to logs/ProtocolLog/SmtpSend/.")

    @field_validator("drop_directory", mode="before")
    @classmethod
    def _drop_off(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("address_spaces")
    @classmethod
    def _spaces(cls, v: list[str]) -> list[str]:
        out = []
        for space in v:
            space = space.strip().lower().rstrip(".")
            bare = space.removeprefix("*.")
            if space != "*" and (not bare or "*" in bare or any(c.isspace() or c in "@<>,;" for c in bare)):
                raise ValueError(f"{space!r} is not an address space (use *, a domain or *.domain)")
            out.append(space)
        return out

    @field_validator("smart_hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        for host in v:
            split_host(host, 25)  # a bad entry raises ValueError naming it
        return v

    def smart_host_addresses(self) -> list[tuple[str, int]]:
        """The smart hosts as (host, port), the connector's port where a host names none."""
        return [split_host(h, self.port) for h in self.smart_hosts]

    @property
    def delivery_type(self) -> str:
        """Exchange's DeliveryType of this connector's queues."""
        if self.drop_directory is not None:
            return DROP
        return SMART_HOST if self.smart_hosts else DNS

    def queue_for(self, domain: str) -> str:
        """The queue (next hop) mail for the domain waits in: the connector's, or for DNS routing the domain's."""
        return domain.lower() if self.delivery_type == DNS else self.name

    def matches(self, domain: str) -> int:
        """How specifically an address space covers the domain: -1 none, 0 `*`, more for longer matches."""
        best = -1
        for space in self.address_spaces:
            if space == "*":
                best = max(best, 0)
            elif space.startswith("*.") and (domain == space[2:] or domain.endswith(space[1:])):
                best = max(best, 2 * len(space[2:]))
            elif domain == space:
                best = max(best, 2 * len(space) + 1)  # exact beats *. of the same length
        return best


class SmartHostAuth(Model):
    username: str = Field(description="User name for AUTH at the smart host.")
    password: str = Field(description="Password for AUTH at the smart host.")


SendConnector.model_rebuild()


def queue_kind(connectors: list[SendConnector], queue: str) -> tuple[str, str] | None:
    """A send connector queue's DeliveryType and NextHopDomain for Get-Queue, or None when no connector owns it."""
    for c in connectors:
        if c.name == queue and c.delivery_type != DNS:
            return c.delivery_type, ", ".join(c.smart_hosts) if c.smart_hosts else str(c.drop_directory)
    if "." in queue and any(c.delivery_type == DNS and c.matches(queue) >= 0 for c in connectors):
        return DNS, queue
    return None
