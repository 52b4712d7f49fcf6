"""The value types settings are written in: sizes (`10MB`), durations (`5m`, `1.00:00:00`) and the strict model
every settings section derives from (an unknown key is an error, never ignored)."""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

__all__ = ["Binding", "ByteSize", "Duration", "Model", "ProtocolLoggingLevel", "parse_binding"]

_UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def _parse_size(value: Any) -> Any:
    """Accept 10485760, "10MB", "256 KB" (binary units, as Exchange's ByteQuantifiedSize)."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?B?)\s*", value.upper())
        if not m:
            raise ValueError(f"{value!r} is not a size (use bytes or a number with KB, MB or GB)")
        return int(float(m.group(1)) * _UNITS[m.group(2) if m.group(2) != "K" else "KB"])
    return value


ByteSize = Annotated[int, BeforeValidator(_parse_size), Field(ge=0)]

_SPANS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _parse_duration(value: Any) -> Any:
    """Seconds as a number, "30s", "5m", "4h", "2d", or Exchange's TimeSpan "[d.]hh:mm:ss"."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd]?)", text)
    if m:
        return float(m.group(1)) * _SPANS[m.group(2) or "s"]
    m = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)", text)
    if m:
        return int(m.group(1) or 0) * 86400 + int(m.group(2)) * 3600 + int(m.group(3)) * 60 + float(m.group(4))
    raise ValueError(f"{value!r} is not a duration (use seconds, 30s, 5m, 4h, 2d or d.hh:mm:ss)")


Duration = Annotated[float, BeforeValidator(_parse_duration), Field(ge=0)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def parse_binding(binding: str) -> tuple[str, int]:
    """`host:port` (`[::1]:25` too); an empty host is every interface. ValueError naming a bad value."""
    host, sep, port = binding.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{binding!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


def _binding(value: str) -> str:
    parse_binding(value)  # raises ValueError naming the bad value
    return value


Binding = Annotated[str, AfterValidator(_binding)]
"""A `host:port` setting, checked when the configuration is read."""


class ProtocolLoggingLevel(str, enum.Enum):
    """A receive or send connector's ProtocolLoggingLevel."""

    NONE = "None"
    VERBOSE = "Verbose"
