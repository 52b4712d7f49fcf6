"""What every process of a running hub sets up the same way: its event loop and its logging (the hub's process
and its receive worker processes, `transport.workers`)."""

from __future__ import annotations

import asyncio
import logging
from enum import Enum
from typing import Callable

from .core.errors import TransportError
from .core.loop_threads import batch_executor

__all__ = ["EventLoop", "loop_factory", "configure_logging", "running_loop_kind"]


class EventLoop(str, Enum):
    """`transport run --event-loop`: uvloop (the `speed` extra) when installed, else asyncio's own."""

    AUTO = "auto"
    ASYNCIO = "asyncio"
    UVLOOP = "uvloop"


def loop_factory(choice: EventLoop) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop to serve on (uvloop or asyncio's), with batch threads behind `to_thread`
    (`transport.core.loop_threads`); asking for uvloop without it installed is an error."""
    new_loop = asyncio.new_event_loop
    if choice is not EventLoop.ASYNCIO:
        try:
            import uvloop
        except ImportError:
            if choice is EventLoop.UVLOOP:
                raise TransportError("--event-loop uvloop: uvloop is not installed (pip install '.[speed]')") from None
        else:
            new_loop = uvloop.new_event_loop

    def make() -> asyncio.AbstractEventLoop:
        loop = new_loop()
        loop.set_default_executor(batch_executor())
        return loop

    return make


def running_loop_kind() -> EventLoop:
    """Which event loop this process serves on (its receive workers serve on the same)."""
    return EventLoop.UVLOOP if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else EventLoop.ASYNCIO


def configure_logging(level: str, process: str = "") -> None:
    """Log lines to stderr at `level`, each naming its process when given (`[receive worker 2]`); aiosmtpd's
    per-command INFO lines only at DEBUG."""
    tag = f"[{process}] " if process else ""
    logging.basicConfig(level=level.upper(), format=f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s")
    if level.upper() != "DEBUG":
        aiosmtpd_log = logging.getLogger("mail.log")
        aiosmtpd_log.setLevel(logging.WARNING)  # aiosmtpd logs every command at INFO
        aiosmtpd_log.addFilter(lambda r: "login_data is deprecated" not in r.getMessage())  # its own AUTH code
