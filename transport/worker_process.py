"""A receive worker process: SMTP receive and the receive agents, on listening sockets the hub hands down.

The hub (`transport.workers`) starts it as `python -m transport.worker_process --channel FD`, with the listening
sockets and one end of a socket pair inherited, and sends the configuration over that channel. Here each
session runs as it would in the hub's own process, up to the durable submit: the stamps and the message events
run here, then the mail item goes to the hub, which commits it to the Submission queue and answers with its
internal id; only then does the client get its 250. This process owns no file: its log rows (tracking, agent log,
protocol log) and its counters go to the hub, which writes them.

If the hub's process goes away, the channel closes and the worker drops its sessions and exits at once: a client
whose message was not answered with 250 sends it again, and nothing answered 250 is held only here.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from .core.agent import AgentContext
from .core.agent_log import agent_log
from .core.clock import real_time
from .core.config import TransportConfig
from .core.counters import Counters
from .core.dns import DnsResolver
from .core.errors import HandOverError, StoreError
from .core.logfile import RollingLog
from .core.mailitem import MailItem
from .core.pipeline import Pipeline, load_pipeline
from .core.tracking import TrackingLog, tracking_log
from .process_setup import EventLoop, configure_logging, loop_factory
from .receive_connector import ReceiveConnectors
from .submission import Submission, SubmissionSteps
from .worker_channel import Channel, ChannelClosed, Frame

__all__ = ["ForwardedSubmission", "ReceiveWorker", "main"]

log = logging.getLogger("transport.worker")

COUNTS_INTERVAL = 0.5
"""Seconds between two reports of the counters' increments to the hub (sent even when nothing changed: the hub
takes a worker that sends nothing for long as hung, `transport.workers.HANG_TIMEOUT`)."""


class ForwardedSubmission(Submission):
    """The submission path as a receive worker has it: stamps, the Send As check and the message events run here;
    the durable submit is the hub's, asked over the channel (the 250 still waits for the hub's commit)."""

    def __init__(self, config: TransportConfig, pipeline: Pipeline, tracking: TrackingLog, spool_folder: Path,
                 worker: "ReceiveWorker") -> None:
        SubmissionSteps.__init__(self, config, pipeline, tracking)
        self.clock = real_time
        self.spool_folder = spool_folder
        self.pressure = False
        self._worker = worker

    @property
    def back_pressure(self) -> bool:
        """The hub's back pressure, as it last said (with each answer, and when it changes)."""
        return self.pressure

    async def submit(self, item: MailItem, claim: Any = None) -> int:
        internal_id = await self._worker.ask(Frame.SUBMIT, item)
        assert internal_id is not None
        return internal_id

    async def submit_from_agent(self, item: MailItem, agent: str, cause: MailItem | None = None) -> int | None:
        return await self._worker.ask(Frame.SUBMIT_AGENT, item, agent, cause)


class ReceiveWorker:
    """The receive connectors and the agent pipeline of one worker process, and its side of the channel."""

    def __init__(self, config: TransportConfig, channel: Channel, spool_folder: Path) -> None:
        self.channel = channel
        channel.unsendable = self._unsendable
        self.counters = Counters()
        tracking = tracking_log(config)
        tracking.enabled = True  # the rows go to the hub, whose settings decide what is written
        context = AgentContext(config, DnsResolver(config.dns), self.counters, logging.getLogger("transport.agents"))
        self.pipeline = load_pipeline(config.agents, context, tracking, agent_log(config))
        self.submission = ForwardedSubmission(config, self.pipeline, tracking, spool_folder, self)
        context.submit = self.submission.submit_from_agent
        self.connectors = ReceiveConnectors(config, self.submission)
        self._seq = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._reported_counters: dict[str, dict[str, int]] = {}
        self._reported_agents: dict[int, tuple[int, int, int]] = {}
        self._stopping: asyncio.Task | None = None
        self.done = asyncio.Event()
        self.exit_status = 0

    async def ask(self, frame: Frame, *args: Any) -> Any:
        """Send a request to the hub and wait for its answer (StoreError when the hub could not queue,
        HandOverError when it is gone)."""
        if self.done.is_set():
            raise HandOverError("the hub's process is gone")
        seq = next(self._seq)
        future = asyncio.get_running_loop().create_future()
        self._waiting[seq] = future
        self.channel.send(frame, seq, *args)
        return await future

    def _unsendable(self, message: tuple[Any, ...], error: Exception) -> None:
        """A message the hub cannot be sent (a stamp that does not pickle): its session is answered 451."""
        log.error("cannot hand %s to the hub: %s: %s", message[0].name, type(error).__name__, error)
        if message[0] in (Frame.SUBMIT, Frame.SUBMIT_AGENT):
            future = self._waiting.pop(message[1], None)
            if future is not None and not future.done():
                future.set_exception(HandOverError(f"the message cannot be handed to the hub ({type(error).__name__})"))

    async def serve(self, sockets: list[socket.socket]) -> int:
        """Listen, say READY, then answer the hub until it says STOP (0) or goes away (1)."""
        await self.pipeline.start()
        await self.connectors.start(sockets)
        self.channel.send(Frame.READY, os.getpid())
        reporter = asyncio.create_task(self._report_counts())
        reader = asyncio.create_task(self._read())
        await self.done.wait()
        reporter.cancel()
        reader.cancel()
        return self.exit_status

    async def _read(self) -> None:
        try:
            while True:
                for message in await self.channel.receive():
                    self._handle(message)
        except ChannelClosed:
            if self._stopping is None:
                log.error("the hub's process is gone: dropping every session")
                self.exit_status = 1
                self._abandon()

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind is Frame.SUBMITTED:
            _, seq, internal_id, error, pressure = message
            self.submission.pressure = pressure
            future = self._waiting.pop(seq, None)
            if future is not None and not future.done():
                if error is None:
                    future.set_result(internal_id)
                else:
                    future.set_exception(StoreError(error))
        elif kind is Frame.PRESSURE:
            self.submission.pressure = message[1]
        elif kind is Frame.STOP:
            self.stop(message[1])

    def stop(self, grace: float) -> None:
        """Stop accepting; sessions may finish within `grace` seconds; then report and exit."""
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._stop(grace))

    async def _stop(self, grace: float) -> None:
        await self.connectors.close(grace)
        await self.pipeline.stop()
        self._send_counts()
        try:
            await self.channel.drain()
        except ChannelClosed:
            pass
        self.channel.close()
        self.done.set()

    def _abandon(self) -> None:
        """The hub is gone: nothing here can be queued any more; fail what waits, close every session now."""
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(HandOverError("the hub's process is gone"))
        self._waiting.clear()
        for server in self.connectors.servers:
            server.close()
        for connector in self.connectors.connectors:
            for session in list(connector.sessions):
                if session.transport is not None:
                    session.transport.abort()
        self.done.set()

    async def _report_counts(self) -> None:
        while True:
            await asyncio.sleep(COUNTS_INTERVAL)
            self._send_counts()

    def _send_counts(self) -> None:
        """The counters' and the agents' increments since the last report (empty ones too: the hub hears that
        this worker's loop turns)."""
        counters: dict[str, dict[str, int]] = {}
        for counter_set, values in self.counters.snapshot().items():
            before = self._reported_counters.get(counter_set, {})
            changed = {name: value - before.get(name, 0) for name, value in values.items() if value != before.get(name, 0)}
            if changed:
                counters[counter_set] = changed
                self._reported_counters[counter_set] = dict(values)
        agents: dict[int, tuple[int, int, int]] = {}
        for la in self.pipeline.agents:
            now = (la.calls, la.errors, la.time_ns)
            before = self._reported_agents.get(la.position, (0, 0, 0))
            if now != before:
                agents[la.position] = (now[0] - before[0], now[1] - before[1], now[2] - before[2])
                self._reported_agents[la.position] = now
        self.channel.send(Frame.COUNTS, counters, agents)


async def _run(channel_fd: int) -> int:
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=channel_fd))
    channel = Channel(reader, writer)
    (message,) = await channel.receive()
    assert message[0] is Frame.INIT
    settings = message[1]
    sys.path[:] = settings["sys_path"]  # agents load by dotted path exactly as in the hub
    configure_logging(settings["log_level"], f"receive worker {settings['slot']}")
    RollingLog.sink = lambda prefix, row: channel.send(Frame.ROW, prefix, row)
    worker = ReceiveWorker(settings["config"], channel, settings["spool_folder"])
    worker.submission.pressure = settings["pressure"]
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.stop, 10.0)
    return await worker.serve([socket.socket(fileno=fd) for fd in settings["listening"]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m transport.worker_process",
                                     description="A receive worker process of the hub (the hub starts it).")
    parser.add_argument("--channel", type=int, required=True, help="descriptor of the channel to the hub")
    parser.add_argument("--event-loop", choices=[e.value for e in EventLoop], default=EventLoop.ASYNCIO.value)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the hub too, which stops its workers
    with asyncio.Runner(loop_factory=loop_factory(EventLoop(args.event_loop))) as runner:
        return runner.run(_run(args.channel))


if __name__ == "__main__":
    sys.exit(main())
