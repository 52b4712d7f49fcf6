"""Configuration: pydantic models loaded from YAML, with Exchange's setting names and defaults.

Every setting has a default and a one-line description (`transport check-config --defaults` prints them).
A bad file is reported as ``file:line: key: problem``, never as a traceback: the YAML node tree is kept
so each validation error can be traced back to the line that caused it.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic import BeforeValidator, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .config_types import ByteSize, Duration, Model, ProtocolLoggingLevel, parse_binding
from .dns import DnsSettings
from .errors import ConfigError
from .internal_servers import parse_internal_servers
from .monitoring_config import (AgentLogSettings, DashboardSettings, MetricsSettings, ProtocolLogSettings,
                                TrackingSettings)
from .outbound_config import DsnSettings, SendConnector
from .scl import SclThresholds

__all__ = ["ConfigError", "ConfigFile", "TransportConfig", "load_config", "read_config_file", "validate_config", "ByteSize",
           "parse_binding", "ProtocolLoggingLevel"]

class DomainType(str, enum.Enum):
    AUTHORITATIVE = "Authoritative"
    INTERNAL_RELAY = "InternalRelay"
    EXTERNAL_RELAY = "ExternalRelay"


class AcceptedDomain(Model):
    domain: str = Field(description="The SMTP domain the organisation accepts mail for (e.g. contoso.com).")
    domain_type: DomainType = Field(
        DomainType.AUTHORITATIVE, alias="type",
        description="Authoritative: recipients must exist here; InternalRelay/ExternalRelay: relay onward.")

    @field_validator("domain")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.strip().lower().rstrip(".")


class Mailbox(Model):
    address: str = Field(description="Primary SMTP address of the mailbox.")
    display_name: str = Field("", description="Display name, used in tables and NDRs.")
    password: str | None = Field(None, description="Password for SMTP AUTH as this mailbox (lab use; none = cannot log in).")
    scl_junk_threshold: int | None = Field(
        None, ge=0, le=9, description="Per-mailbox SCLJunkThreshold; messages with SCL above it go to Junk (None = organisation's).")
    send_as: list[str] = Field(
        default_factory=list, description="Send As (Add-ADPermission -ExtendedRights Send-As): the mailboxes that may send with this mailbox in From.")
    send_on_behalf: list[str] = Field(
        default_factory=list, description="GrantSendOnBehalfTo: the mailboxes that may send for this one (From stays, Sender: names the sending mailbox).")
    # Set-Mailbox's other SCL settings: each overrides the content filter's (None = the filter's own)
    scl_junk_enabled: bool | None = Field(None, description="Per-mailbox SCLJunkEnabled: false keeps this mailbox's mail out of Junk.")
    scl_delete_enabled: bool | None = Field(None, description="Per-mailbox SCLDeleteEnabled (None = the content filter's).")
    scl_delete_threshold: int | None = Field(None, ge=0, le=9, description="Per-mailbox SCLDeleteThreshold (None = the content filter's).")
    scl_reject_enabled: bool | None = Field(None, description="Per-mailbox SCLRejectEnabled (None = the content filter's).")
    scl_reject_threshold: int | None = Field(None, ge=0, le=9, description="Per-mailbox SCLRejectThreshold (None = the content filter's).")
    scl_quarantine_enabled: bool | None = Field(None, description="Per-mailbox SCLQuarantineEnabled (None = the content filter's).")
    scl_quarantine_threshold: int | None = Field(
        None, ge=0, le=9, description="Per-mailbox SCLQuarantineThreshold (None = the content filter's).")

    @field_validator("address")
    @classmethod
    def _addr(cls, v: str) -> str:
        v = v.strip()
        local, at, domain = v.rpartition("@")
        if not (at and local and domain) or any(c.isspace() or c in "<>,;" for c in v):
            raise ValueError(f"{v!r} is not an SMTP address")
        return v.lower()


class Organization(Model):
    name: str = Field("Contoso", description="Organisation name, shown in banners and reports.")
    scl_junk_threshold: int = Field(
        4, ge=0, le=9, description="SCLJunkThreshold (Set-OrganizationConfig): SCL above this moves mail to Junk.")
    quarantine_mailbox: str | None = Field(
        None, description="QuarantineMailbox (Set-ContentFilterConfig): the mailbox that receives quarantined messages "
        "with their original envelope; one of `mailboxes` (None = nothing is quarantined).")

    @field_validator("quarantine_mailbox")
    @classmethod
    def _quarantine_lower(cls, v: str | None) -> str | None:
        return v.strip().lower() if v else None


class TlsSettings(Model):
    enabled: bool = Field(True, description="Offer STARTTLS.")
    certificate: Path | None = Field(None, description="PEM certificate; empty = a self-signed one made on first run under the data root.")
    key: Path | None = Field(None, description="PEM private key for the certificate.")


class PermissionGroup(str, enum.Enum):
    """Set-ReceiveConnector -PermissionGroups: who may submit on a connector, with which rights."""

    ANONYMOUS_USERS = "AnonymousUsers"    # unauthenticated clients may send to accepted domains
    EXCHANGE_USERS = "ExchangeUsers"      # mailbox users may AUTH; they bypass anti-spam and may relay
    EXCHANGE_SERVERS = "ExchangeServers"  # every client of the connector is one of our servers: bypass, headers kept
    PARTNERS = "Partners"                 # partner domains (no domain security yet: treated as AnonymousUsers)


class ReceiveConnector(Model):
    """Set-ReceiveConnector settings for one SMTP listener."""

    name: str = Field("Default Frontend", description="Receive connector name (connector-id in logs).")
    bindings: list[str] = Field(["127.0.0.1:2525"], description="Addresses to listen on, as host:port ([v6]:port).")
    fqdn: str = Field("hub.contoso.com", description="Name used in the banner, EHLO reply and Received headers.")
    max_message_size: ByteSize = Field(36 * 1024**2, description="MaxMessageSize: larger messages get 552 5.3.4.")
    max_header_size: ByteSize = Field(256 * 1024, description="MaxHeaderSize: larger header blocks get 552 5.3.4.")
    max_recipients_per_message: int = Field(200, ge=1, description="MaxRecipientsPerMessage: more get 452 4.5.3.")
    connection_inactivity_timeout: float = Field(300, gt=0, description="ConnectionInactivityTimeout in seconds.")
    max_protocol_errors: int = Field(5, ge=1, description="MaxProtocolErrors before 421 4.7.0 and disconnect.")
    connection_timeout: Duration = Field(600, gt=0, description="ConnectionTimeout: the longest a session may last, busy or not (then 421 4.4.1).")
    max_inbound_connection: int = Field(5000, ge=1, description="MaxInboundConnection: sessions at once on this connector (then 421 4.3.2).")
    max_inbound_connection_per_source: int = Field(20, ge=1, description="MaxInboundConnectionPerSource: sessions at once from one IP address.")
    max_inbound_connection_percentage_per_source: int = Field(
        2, ge=1, le=100, description="MaxInboundConnectionPercentagePerSource: one IP's share of MaxInboundConnection, in %; the lower cap wins.")
    max_logon_failures: int = Field(3, ge=1, description="MaxLogonFailures: failed AUTH attempts before the session is dropped (421 4.7.0).")
    auth_tarpit_interval: Duration = Field(5, description="AuthTarpitInterval: delay before each 535 reply to a failed AUTH.")
    message_rate_limit: int = Field(0, ge=0, description="MessageRateLimit: messages per minute from one IP address (0 = unlimited; then 421 4.4.2 at MAIL FROM).")
    auth_mechanisms: list[Literal["PLAIN", "LOGIN"]] = Field(["PLAIN", "LOGIN"], description="AUTH mechanisms offered.")
    require_tls_for_auth: bool = Field(False, description="Offer AUTH only after STARTTLS (Exchange's default on client connectors).")
    tls: TlsSettings = Field(default_factory=TlsSettings, description="STARTTLS certificate.")
    remote_ip_ranges: list[str] = Field(
        ["0.0.0.0/0", "::/0"], description="RemoteIPRanges: clients this connector serves; of connectors sharing a "
        "binding, the one with the most specific matching range takes the session.")
    permission_groups: list[PermissionGroup] = Field(
        [PermissionGroup.ANONYMOUS_USERS, PermissionGroup.EXCHANGE_USERS],
        description="PermissionGroups: AnonymousUsers, ExchangeUsers, ExchangeServers, Partners.")
    require_tls: bool = Field(False, description="RequireTLS: MAIL FROM before STARTTLS gets 530 5.7.0.")
    tarpit_interval: Duration = Field(5, description="TarpitInterval: how long 5.1.1 replies to anonymous sessions are held back.")
    agents: list[str] | None = Field(
        None, description="Names of the anti-spam agents that run on this connector (null = every enabled agent), "
        "as Exchange 2003 enabled each filter per SMTP virtual server.")
    xclient_trusted: list[str] = Field(
        default_factory=list, description="Clients (IPs/CIDRs) that may use XCLIENT to set the IP and HELO the hub "
        "believes; XCLIENT is refused (550 5.7.0) for everyone else.")
    protocol_logging_level: ProtocolLoggingLevel = Field(
        ProtocolLoggingLevel.NONE, description="ProtocolLoggingLevel: Verbose writes every command and reply of this "
        "connector's sessions to logs/ProtocolLog/SmtpReceive/RECVyyyymmdd-N.log.")

    @field_validator("bindings")
    @classmethod
    def _bindings(cls, v: list[str]) -> list[str]:
        seen = set()
        for b in v:
            where = parse_binding(b)
            if where in seen:
                raise ValueError(f"{b!r} is listed twice")
            seen.add(where)
        return v

    @field_validator("fqdn")
    @classmethod
    def _fqdn(cls, v: str) -> str:
        v = v.strip().rstrip(".")
        if not v or any(c.isspace() for c in v):
            raise ValueError("the server's name (banner, EHLO reply, Received lines) cannot be empty or hold spaces")
        return v

    @field_validator("remote_ip_ranges", "xclient_trusted")
    @classmethod
    def _ranges(cls, v: list[str]) -> list[str]:
        parse_internal_servers(v)  # a bad entry raises ValueError naming it
        return v

    def grants(self, group: PermissionGroup) -> bool:
        return group in self.permission_groups


def _connector_list(value: Any) -> Any:
    """`receive:` takes one connector (a mapping, as before) or a list of them."""
    return [value] if isinstance(value, dict) else value


ReceiveConnectors = Annotated[list[ReceiveConnector], BeforeValidator(_connector_list), Field(min_length=1)]


class QueueSettings(Model):
    """Queue database, retry and expiry (Set-TransportService), poison messages and back pressure."""

    durable: bool = Field(True, description="fsync each group commit (synchronous=FULL); off only for benchmarks.")
    poison_threshold: int = Field(2, ge=1, le=10, description="PoisonThreshold: crashes while a message is in process before it goes to Poison.")
    batch_size: int = Field(256, ge=1, description="Most messages one group commit or one delivery batch takes.")
    transient_failure_retry_count: int = Field(6, ge=0, le=15, description="TransientFailureRetryCount: quick retries after a transient failure.")
    transient_failure_retry_interval: Duration = Field(300, description="TransientFailureRetryInterval between those quick retries.")
    outbound_connection_failure_retry_interval: Duration = Field(600, description="OutboundConnectionFailureRetryInterval once quick retries are used up.")
    delay_notification_timeout: Duration = Field(4 * 3600, description="DelayNotificationTimeout: a delay DSN is recorded once a message waits this long.")
    message_expiration_timeout: Duration = Field(2 * 86400, description="MessageExpirationTimeout: then the message fails with 550 4.4.7 QUEUE.Expired.")
    max_submission_queue_length: int = Field(9999, ge=1, description="Back pressure: more messages waiting for the categorizer than this → 452 4.3.1 at MAIL FROM.")
    min_free_disk_space: ByteSize = Field(512 * 1024**2, description="Back pressure: less free space under the data root than this → 452 4.3.1.")
    admin_poll_interval: Duration = Field(0.5, gt=0, description="How often the running hub looks for changes made by `transport queue/message` commands.")


def _directory_off(value: Any) -> Any:
    """An empty path turns a directory off, as $null does in Exchange."""
    return None if value == "" else value


DirectoryPath = Annotated[Path | None, BeforeValidator(_directory_off)]


class DirectorySettings(Model):
    """What the Pickup and Replay directories share (Set-TransportService PickupDirectory* settings)."""

    path: DirectoryPath = Field(
        None, description="The folder, relative to the data root; empty or null turns the directory off.")
    max_messages_per_minute: int = Field(
        100, ge=0, description="PickupDirectoryMaxMessagesPerMinute: files claimed per minute from this directory (0 = unlimited).")
    max_header_size: ByteSize = Field(
        64 * 1024, description="PickupDirectoryMaxHeaderSize: a file with a larger header block goes to badmail.")
    run_receive_agents: bool = Field(
        True, description="Our extension: play each file to the SMTP receive agents as a simulated session (false = Exchange, which runs none).")
    poll_interval: float = Field(
        0.25, gt=0, le=5, description="Seconds between scans of the directory, the worst-case pickup latency (Exchange polls every 5 s).")
    badmail_ndr: bool = Field(
        False, description="Also send the sender the NDR Exchange returns for a file moved to badmail, when the file "
        "names a valid sender and recipients (off: the reason file and the BADMAIL row only).")

    def directory(self, data_root: Path) -> Path | None:
        """The folder to watch (relative paths are under the data root); None when the directory is off."""
        return None if self.path is None else data_root / self.path


class PickupDirectory(DirectorySettings):
    path: DirectoryPath = Field(
        Path("pickup"), description="PickupDirectoryPath, relative to the data root; empty or null turns Pickup off.")
    max_recipients_per_message: int = Field(
        100, ge=1, description="PickupDirectoryMaxRecipientsPerMessage: a file with more recipients goes to badmail.")


class ReplayDirectory(DirectorySettings):
    path: DirectoryPath = Field(
        Path("replay"), description="ReplayDirectoryPath, relative to the data root; empty or null turns Replay off.")


class StoreDriverSettings(DirectorySettings):
    """Store-driver submission: what users put in their mailbox's Outbox is sent (Mailbox Transport Submission)."""

    path: DirectoryPath = Field(
        Path(".Outbox"), description="Each mailbox's Outbox, its Maildir++ folder `.Outbox`; empty or null turns store-driver submission off.")
    max_messages_per_minute: int = Field(
        0, ge=0, description="Messages taken per minute from each Outbox (0 = unlimited, as Exchange's store driver).")
    run_receive_agents: bool = Field(
        False, description="Our extension: play each message to the SMTP receive agents (false = Exchange, which runs none on mailbox submissions).")

    @field_validator("path")
    @classmethod
    def _outbox(cls, v: Path | None) -> Path | None:
        if v is not None and v != Path(".Outbox"):
            raise ValueError("the store driver takes mail from each mailbox's `.Outbox` folder; set .Outbox, or empty to turn it off")
        return v


class AgentSubmission(Model):
    """Messages agents submit (journal reports, auto-replies): how far a chain of them may go."""

    max_hop_count: int = Field(
        3, ge=1, le=30, description="Agent-submitted messages in a chain (a message an agent made because of one another agent made) before the next submit is refused: no loop between agents.")


class ErrorPolicy(str, enum.Enum):
    FAIL_OPEN = "fail_open"
    FAIL_CLOSED = "fail_closed"


class AgentEntry(Model):
    """One transport agent in the pipeline (Install-TransportAgent + Set-TransportAgent)."""

    cls: str = Field(alias="class", description="Dotted path `package.module:Class`, or an entry point name in `transport.agents`.")
    name: str | None = Field(None, max_length=64, description="Name shown by `transport pipeline` (default: the agent's own).")
    enabled: bool = Field(True, description="Enable-/Disable-TransportAgent.")
    priority: int = Field(100, description="Lower runs first within each event.")
    on_error: ErrorPolicy = Field(ErrorPolicy.FAIL_OPEN, description="fail_open: log and go on; fail_closed: 451 4.3.2 / defer.")
    config: dict[str, Any] = Field(default_factory=dict, description="The agent's own settings, validated by its Config model.")


class TransportConfig(Model):
    """The whole hub: transport.yaml."""

    organization: Organization = Field(default_factory=Organization, description="Organisation-wide settings.")
    data_root: Path = Field(Path("var"), description="Where queue, mailboxes, pickup, replay, logs live (relative to this file).")
    accepted_domains: list[AcceptedDomain] = Field(
        default_factory=lambda: [AcceptedDomain(domain="contoso.com")], description="Accepted domains.")
    mailboxes: list[Mailbox] = Field(default_factory=list, description="The mailbox directory.")
    internal_smtp_servers: list[str] = Field(
        default_factory=list, description="InternalSMTPServers: IPs/CIDRs of the organisation's own relays.")
    receive_connectors: ReceiveConnectors = Field(
        default_factory=lambda: [ReceiveConnector()], alias="receive",
        description="The SMTP receive connectors (one mapping, or a list); the first names the server (fqdn).")
    queue: QueueSettings = Field(default_factory=QueueSettings, description="Queue database.")
    tracking: TrackingSettings = Field(default_factory=TrackingSettings, description="Message tracking log.")
    agent_log: AgentLogSettings = Field(default_factory=AgentLogSettings, description="The agent log.")
    protocol_log: ProtocolLogSettings = Field(default_factory=ProtocolLogSettings, description="The receive connectors' protocol logs.")
    metrics: MetricsSettings = Field(default_factory=MetricsSettings, description="The Prometheus metrics endpoint.")
    dns: DnsSettings = Field(default_factory=DnsSettings, description="DNS servers and local zone files.")
    agents: list[AgentEntry] = Field(default_factory=list, description="Transport agents, in any order (priority orders them).")
    workers: int | None = Field(
        None, ge=0, le=64, description="Receive worker processes beside the hub's: each serves SMTP receive and the "
        "receive agents on the receive connectors' ports and hands accepted mail to the hub's process, which owns the "
        "queue. Absent: one receive process per CPU core (the hub's own counts as one when hub_receives is on); 0: "
        "SMTP receive runs in the hub's process alone.")
    hub_receives: bool = Field(
        True, description="The hub's process serves SMTP sessions too, on the same ports as its receive workers "
        "(off: only the workers do, so an agent that blocks its event loop or crashes its process stops a worker, "
        "which is started again, never the queue's process).")
    _source: tuple[str, dict[tuple, int]] = PrivateAttr(default=("transport.yaml", {}))
    _mailbox_index: tuple[list, int, dict[str, "Mailbox"]] | None = PrivateAttr(default=None)

    def locate(self, *path: str | int) -> str:
        """`file:line` of a setting, for problems found after loading (an agent that will not load)."""
        file, lines = self._source
        return ConfigFile(Path(file), {}, lines).locate(*path)
    pickup: PickupDirectory = Field(default_factory=PickupDirectory, description="The Pickup directory: .eml files dropped in are submitted.")
    replay: ReplayDirectory = Field(default_factory=ReplayDirectory, description="The Replay directory: files with an X-header envelope are resubmitted.")
    store_driver: StoreDriverSettings = Field(
        default_factory=StoreDriverSettings, description="Store-driver submission: each mailbox's Outbox is sent, a copy kept in Sent Items.")
    agent_submission: AgentSubmission = Field(default_factory=AgentSubmission, description="Messages that agents submit.")
    send_connectors: list[SendConnector] = Field(
        default_factory=list, description="Send connectors: where mail for other domains goes (none = it waits in Unreachable).")
    dsn: DsnSettings = Field(default_factory=DsnSettings, description="Delivery status notifications (NDRs, delay and success notices).")

    @model_validator(mode="after")
    def _someone_receives(self) -> "TransportConfig":
        if self.workers == 0 and not self.hub_receives:
            problem = PydanticCustomError("nobody_receives", "with workers: 0 SMTP receive runs in the hub's process: "
                                          "hub_receives cannot be off", {})
            raise ValidationError.from_exception_data("TransportConfig", [InitErrorDetails(
                type=problem, loc=("hub_receives",), input=False)])
        return self

    @model_validator(mode="after")
    def _send_connector_names(self) -> "TransportConfig":
        seen: set[str] = set()
        for i, c in enumerate(self.send_connectors):
            if c.name.lower() in seen or c.name in ("Submission", "Unreachable", "Poison", "mailbox") or "." in c.name:
                problem = PydanticCustomError("send_connector_name", "send connector name '{name}' is taken or has a "
                                              "dot (a dot marks a domain's queue)", {"name": c.name})
                raise ValidationError.from_exception_data("TransportConfig", [InitErrorDetails(
                    type=problem, loc=("send_connectors", i, "name"), input=c.name)])
            seen.add(c.name.lower())
        return self

    def send_connector(self, domain: str) -> SendConnector | None:
        """The send connector whose address space covers the domain most specifically (the first on a tie)."""
        best, found = -1, None
        for c in self.send_connectors:
            score = c.matches(domain.lower())
            if score > best:
                best, found = score, c
        return found

    @property
    def receive_workers(self) -> int:
        """How many receive worker processes the hub starts: `workers`, or when absent one receive process per
        core, the hub's own among them when it receives too (so none on one core: the hub receives alone)."""
        if self.workers is not None:
            return self.workers
        cores = os.cpu_count() or 1
        return cores - 1 if self.hub_receives else cores

    @property
    def hub_serves_sessions(self) -> bool:
        """Whether the hub's own process serves SMTP sessions (always when it has no receive worker)."""
        return self.hub_receives or not self.receive_workers

    @property
    def postmaster(self) -> str:
        """The address reports come from: ExternalPostmasterAddress, or postmaster@ the first accepted domain."""
        if self.dsn.external_postmaster_address:
            return self.dsn.external_postmaster_address
        domain = self.accepted_domains[0].domain.removeprefix("*.") if self.accepted_domains else self.receive.fqdn
        return f"postmaster@{domain}"
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings, description="The web dashboard (queues, tracking, trace, mailboxes).")

    @field_validator("internal_smtp_servers")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        parse_internal_servers(v)  # a bad entry raises ValueError naming it
        return v

    @model_validator(mode="after")
    def _mailbox_domains(self) -> "TransportConfig":
        domains = {d.domain for d in self.accepted_domains}
        for i, mb in enumerate(self.mailboxes):
            if self.accepted_domain(mb.address.rpartition("@")[2]) is None:  # `*.` domains cover subdomains
                # raised with its location, so the error points at the mailbox's line, not the file's first
                problem = PydanticCustomError("mailbox_domain", "mailbox {address} is not in an accepted domain ({domains})",
                                              {"address": mb.address, "domains": ", ".join(sorted(domains))})
                raise ValidationError.from_exception_data("TransportConfig", [InitErrorDetails(
                    type=problem, loc=("mailboxes", i, "address"), input=mb.address)])
        return self

    @property
    def receive(self) -> ReceiveConnector:
        """The first receive connector: its fqdn is the server's name in banners, stamps and logs."""
        return self.receive_connectors[0]

    def connector(self, name: str) -> ReceiveConnector | None:
        """The receive connector of that name (a session's `connector`), or None."""
        return next((c for c in self.receive_connectors if c.name == name), None)

    @model_validator(mode="after")
    def _connector_names(self) -> "TransportConfig":
        names = [c.name for c in self.receive_connectors]
        for i, name in enumerate(names):
            if names.index(name) != i:
                problem = PydanticCustomError("connector_name", "two receive connectors are named '{name}'", {"name": name})
                raise ValidationError.from_exception_data("TransportConfig", [InitErrorDetails(
                    type=problem, loc=("receive", i, "name"), input=name)])
        return self

    # Derived look-ups used on the hot path.
    def accepted_domain(self, domain: str) -> AcceptedDomain | None:
        domain = domain.lower()
        for d in self.accepted_domains:
            if d.domain == domain or (d.domain.startswith("*.") and domain.endswith(d.domain[1:])):
                return d
        return None

    def mailbox(self, address: str) -> Mailbox | None:
        """The mailbox of that address (case-blind), or None: a dictionary look-up, not a walk of the directory,
        since every message asks it several times (made again when the list of mailboxes is replaced or grows)."""
        index = self.__pydantic_private__["_mailbox_index"]  # not `self._mailbox_index`: pydantic's __getattr__ is slow
        if index is None or index[0] is not self.mailboxes or index[1] != len(self.mailboxes):
            index = self._mailbox_index = (self.mailboxes, len(self.mailboxes), {mb.address: mb for mb in self.mailboxes})
        return index[2].get(address.lower())

    def resolve_paths(self, base: Path) -> None:
        """Make relative paths relative to the configuration file's folder."""
        if not self.data_root.is_absolute():
            self.data_root = (base / self.data_root).resolve()
        for connector in self.receive_connectors:
            for attr in ("certificate", "key"):
                p = getattr(connector.tls, attr)
                if p is not None and not p.is_absolute():
                    setattr(connector.tls, attr, (base / p).resolve())
        self.dns.zone_files = [p if p.is_absolute() else (base / p).resolve() for p in self.dns.zone_files]

    @model_validator(mode="after")
    def _grants(self) -> "TransportConfig":
        """Send As and Send on Behalf name mailboxes of the directory (lower-cased here, as addresses are)."""
        known = {mb.address for mb in self.mailboxes}
        for i, mb in enumerate(self.mailboxes):
            for key in ("send_as", "send_on_behalf"):
                granted = [a.strip().lower() for a in getattr(mb, key)]
                setattr(mb, key, granted)
                for j, address in enumerate(granted):
                    if address not in known:
                        problem = PydanticCustomError("grant", "{address} is not a mailbox of the directory", {"address": address})
                        raise ValidationError.from_exception_data("TransportConfig", [InitErrorDetails(
                            type=problem, loc=("mailboxes", i, key, j), input=address)])
        return self

    @model_validator(mode="after")
    def _quarantine_mailbox(self) -> "TransportConfig":
        """organization.quarantine_mailbox must be one of the mailboxes: quarantined mail needs a real home."""
        name = self.organization.quarantine_mailbox
        if name is not None and self.mailbox(name) is None:
            problem = PydanticCustomError("quarantine_mailbox", "{address} is not one of the mailboxes", {"address": name})
            raise ValidationError.from_exception_data("TransportConfig", [InitErrorDetails(
                type=problem, loc=("organization", "quarantine_mailbox"), input=name)])
        return self

    def scl_thresholds(self, **content_filter: bool | int) -> SclThresholds:
        """The organisation's SCL thresholds (junk, quarantine mailbox) with the content filter's actions."""
        org = self.organization
        return SclThresholds(junk_threshold=org.scl_junk_threshold, quarantine_mailbox=org.quarantine_mailbox,
                             **content_filter)  # type: ignore[arg-type]
    @model_validator(mode="after")
    def _mailboxes_once(self) -> "TransportConfig":
        """A mailbox listed twice (addresses compare case-insensitively) is an error at its second entry."""
        seen: set[str] = set()
        for i, mb in enumerate(self.mailboxes):
            if mb.address in seen:
                problem = PydanticCustomError("mailbox_twice", "mailbox {address} is listed twice", {"address": mb.address})
                raise ValidationError.from_exception_data("TransportConfig", [InitErrorDetails(
                    type=problem, loc=("mailboxes", i, "address"), input=mb.address)])
            seen.add(mb.address)
        return self


def _line_map(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map each key path in the YAML tree to its 1-based line number."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[path + (key,)] = k.start_mark.line + 1
            _line_map(v, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_map(v, path + (i,), out)
    return out


def _format_errors(file: str, err: ValidationError, lines: dict[tuple, int]) -> str:
    out = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        if loc[:2] == ("receive", 0) and ("receive", 0) not in lines:  # one connector, written as a mapping
            loc = loc[:1] + loc[2:]
        probe = loc
        while probe and probe not in lines:
            probe = probe[:-1]
        line = lines.get(probe, 1)
        key = ".".join(str(p) for p in loc) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown setting"
        out.append(f"{file}:{line}: {key}: {msg}")
    return "\n".join(out)


class ConfigFile(NamedTuple):
    """A configuration file read but not yet validated: its settings and the line of each key path."""

    path: Path
    data: dict[str, Any]
    lines: dict[tuple, int]

    def locate(self, *key: str | int) -> str:
        """`file:line` of a setting (the nearest enclosing key that the file spells out)."""
        probe = tuple(key)
        while probe and probe not in self.lines:
            probe = probe[:-1]
        return f"{self.path}:{self.lines.get(probe, 1)}"


def load_config(path: str | Path) -> TransportConfig:
    """Read and validate a transport.yaml; raise ConfigError with `file:line: key: problem` lines."""
    return validate_config(read_config_file(path))


def validate_config(source: ConfigFile) -> TransportConfig:
    """The settings of a file read by `read_config_file`, validated; ConfigError lists every problem found."""
    try:
        cfg = TransportConfig.model_validate(source.data)
    except ValidationError as e:
        raise ConfigError(_format_errors(str(source.path), e, source.lines)) from None
    cfg.resolve_paths(source.path.resolve().parent)
    cfg._source = (str(source.path), source.lines)
    return cfg


def read_config_file(path: str | Path) -> ConfigFile:
    """Read a transport.yaml as YAML; ConfigError when it cannot be read or is not a YAML mapping."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(f"{path}:{line}: (yaml): {e.problem or e.context}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: (top level): expected a mapping of settings, got {type(data).__name__}")
    return ConfigFile(path, data, _line_map(node) if node else {})
