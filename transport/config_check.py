"""`transport check-config`: every problem of a configuration file in one run, not one stage at a time.

The stages a hub goes through at start each get their say even when an earlier one failed: the settings
(every validation error at once), the DNS zone files, and each enabled agent (its class, then its own
settings). Only a file that is not readable YAML stops the check at once, since nothing after it can be read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .core.agent import AgentContext
from .core.config import AgentEntry, ConfigFile, TransportConfig, read_config_file, validate_config
from .core.counters import Counters
from .core.dns import DnsError, DnsResolver, DnsSettings
from .core.errors import AgentLoadError, ConfigError
from .core.pipeline import load_agent

__all__ = ["check_config"]


def check_config(path: str | Path) -> tuple[TransportConfig | None, list[str]]:
    """The validated configuration (None when it is not valid) and every `file:line: key: problem` found."""
    try:
        source = read_config_file(path)
    except ConfigError as e:
        return None, str(e).splitlines()
    problems: list[str] = []
    try:
        config: TransportConfig | None = validate_config(source)
    except ConfigError as e:
        config = None
        problems += str(e).splitlines()
    resolver = _zone_files(source, config, problems)
    context = AgentContext(config or TransportConfig(), resolver, Counters(), logging.getLogger("transport.check"))
    raw_agents = source.data.get("agents")
    for index, raw in enumerate(raw_agents if isinstance(raw_agents, list) else []):
        try:
            entry = AgentEntry.model_validate(raw)
        except ValidationError:
            continue  # already said by the settings stage
        if not entry.enabled:
            continue
        try:
            load_agent(index, entry, context)
        except AgentLoadError as e:
            problems.append(f"{source.locate(*e.path)}: {e}")
    return (config if not problems else None), problems


def _zone_files(source: ConfigFile, config: TransportConfig | None, problems: list[str]) -> DnsResolver:
    """The configuration's resolver; an unreadable zone file is a problem, and the check goes on without it."""
    settings = config.dns if config is not None else _raw_dns(source)
    try:
        return DnsResolver(settings)
    except DnsError as e:
        problems.append(f"{source.locate('dns', 'zone_files')}: dns.zone_files: {e}")
        return DnsResolver(DnsSettings(use_network=False))


def _raw_dns(source: ConfigFile) -> DnsSettings:
    """The `dns:` settings alone, when the file as a whole did not validate (relative paths as the hub reads them)."""
    raw: Any = source.data.get("dns") or {}
    try:
        settings = DnsSettings.model_validate(raw)
    except ValidationError:
        return DnsSettings(use_network=False)  # its problems are already listed
    base = source.path.resolve().parent
    settings.zone_files = [p if p.is_absolute() else (base / p).resolve() for p in settings.zone_files]
    return settings
