"""The dashboard as a child process of `transport run`: started once the hub listens, stopped before it stops.

A process, not a thread: building a page (reading the queue database, the tracking log, rendering a template)
then never holds the hub's interpreter lock, and it can use the machine's other core. The child learns the
pipeline table (Get-TransportPipeline, as the hub loaded it) on its standard input, says where it listens on its
standard output, and ends by itself when the hub is gone, even after a kill -9.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from transport.core.config import TransportConfig
from transport.core.errors import ConfigError

__all__ = ["DashboardProcess"]

START_TIMEOUT = 60.0


class DashboardProcess:
    """`await start()` returns once the dashboard listens (ConfigError naming the binding when it cannot);
    `await stop()` ends it."""

    def __init__(self, config: TransportConfig, config_path: str | Path, pipeline: list[dict[str, Any]]) -> None:
        self.config = config
        self.config_path = Path(config_path)
        self.pipeline = pipeline
        self.address: tuple[str, int] = config.dashboard.host_port
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "transport.dashboard", "--config", str(self.config_path), "--parent", str(os.getpid()),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(self.pipeline).encode() + b"\n")
        await self.proc.stdin.drain()
        self.proc.stdin.close()
        try:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), START_TIMEOUT)).decode().strip()
        except asyncio.TimeoutError:
            line = f"no answer within {START_TIMEOUT:g} s"
        if not line.startswith("listening on "):
            await self.stop()
            raise ConfigError(f"{self.config.locate('dashboard', 'binding')}: dashboard.binding: cannot listen on "
                              f"{self.config.dashboard.binding}: {line.removeprefix('cannot listen: ') or 'the dashboard exited'}")
        host, _, port = line.removeprefix("listening on ").rpartition(":")
        self.address = (host, int(port))

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}/"
