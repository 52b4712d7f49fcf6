"""The settings of what lets a user see inside the hub: the message tracking log, the agent log, the protocol logs,
the Prometheus endpoint and the web dashboard."""

from __future__ import annotations

from pydantic import Field

from .config_types import Binding, ByteSize, Duration, Model, parse_binding

__all__ = ["AgentLogSettings", "DashboardSettings", "MetricsSettings", "ProtocolLogSettings", "TrackingSettings"]


class TrackingSettings(Model):
    enabled: bool = Field(True, description="MessageTrackingLogEnabled.")
    max_age_days: int = Field(30, ge=1, description="MessageTrackingLogMaxAge in days; older daily files are removed.")
    max_file_size: ByteSize = Field(10 * 1024**2, description="MessageTrackingLogMaxFileSize: then the day's next file (MSGTRKyyyymmdd-2.log, …).")
    max_directory_size: ByteSize = Field(1000 * 1024**2, description="MessageTrackingLogMaxDirectorySize: the oldest files go beyond it.")


class AgentLogSettings(Model):
    """The anti-spam agent log (Set-TransportService AgentLog*): one row per agent verdict or agent error."""

    enabled: bool = Field(True, description="AgentLogEnabled: logs/AgentLog/AGENTLOGyyyymmdd-N.log.")
    max_age_days: int = Field(7, ge=1, description="AgentLogMaxAge in days.")
    max_file_size: ByteSize = Field(10 * 1024**2, description="AgentLogMaxFileSize: then the day's next file.")
    max_directory_size: ByteSize = Field(250 * 1024**2, description="AgentLogMaxDirectorySize: the oldest files go beyond it.")


class ProtocolLogSettings(Model):
    """Where the connectors' protocol logs go (Set-TransportService ReceiveProtocolLog*); each receive connector
    turns its own on with `protocol_logging_level: Verbose`."""

    max_age_days: int = Field(30, ge=1, description="ReceiveProtocolLogMaxAge in days.")
    max_file_size: ByteSize = Field(10 * 1024**2, description="ReceiveProtocolLogMaxFileSize: then the day's next file.")
    max_directory_size: ByteSize = Field(250 * 1024**2, description="ReceiveProtocolLogMaxDirectorySize: the oldest files go beyond it.")


class MetricsSettings(Model):
    """The Prometheus endpoint: every counter set, messages received/delivered/failed, queue lengths, latency."""

    enabled: bool = Field(False, description="Serve GET /metrics in Prometheus text format (off by default; the shipped transport.yaml turns it on).")
    binding: Binding = Field("127.0.0.1:9525", description="host:port of the metrics endpoint (keep it on loopback: it has no authentication).")


class DashboardSettings(Model):
    """The web dashboard `transport run` serves (beyond Exchange: its Queue Viewer and message trace in a browser)."""

    enabled: bool = Field(False, description="Serve the dashboard while the hub runs.")
    binding: Binding = Field("127.0.0.1:9526", description="host:port the dashboard listens on (loopback only unless you change it).")
    token: str = Field("", description="Needed by every request that changes state (suspend, resume, retry, remove, export), as the `token` form field or an X-Transport-Token header; empty = the dashboard only reads.")
    refresh_interval: Duration = Field(2, gt=0, description="How often the queue and overview pages refresh themselves, in seconds.")

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_binding(self.binding)
