"""The hub's receive worker processes (Exchange's transport worker processes): SMTP receive on every core.

With `workers: N` (by default one receive process per core, the hub's among them) the hub binds the receive
connectors' listening sockets, sharing each address's port (SO_REUSEPORT: the kernel spreads new connections over
them; see `Hub._bind` for each process's share), and starts N worker processes (`transport.worker_process`), each
accepting on its own, as Postfix's smtpd processes serve one port.
The hub keeps every socket open, so connections that arrive while a worker is being replaced wait for it.
Each worker runs the SMTP sessions and the receive agents; at the end of DATA it hands the mail item to this
process, which owns the queue: the Submission path commits it here (one queue, one writer, so exactly-once
delivery, recovery and the admin commands are what they are with one process) and answers with the internal
id, and only then does the client get its 250.

Workers write no files: their log rows come here and are appended to this process's tracking log, agent log and
receive protocol log; their counters' and agents' increments are added to this process's, so `transport
counters`, `transport pipeline` and the metrics endpoint count every process. Back pressure is this process's
and is sent to the workers with every answer and when it changes. A worker that dies (a crash, kill -9) is
started again on the same sockets; its sessions' clients, none of which had a 250 for an unqueued message, send
again. If this process dies, its workers see the channel close and exit. A worker that stops answering (its event
loop blocked, by an agent's blocking call say) is killed after `hang_timeout` seconds without a frame (every
worker sends one at least twice a second) and started again like a dead one.

What is per worker process: an agent's own memory (its caches, anything it counts itself) and the receive
connectors' connection limits (MaxInboundConnection and MaxInboundConnectionPerSource are counted by each
worker, so the hub as a whole admits up to N times as many), as in an Exchange organisation of N servers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .core.config import TransportConfig
from .core.counters import Counters
from .core.errors import StoreError, TransportError
from .core.mailitem import MailItem
from .core.pipeline import Pipeline
from .process_setup import running_loop_kind
from .submission import Submission
from .worker_channel import Channel, ChannelClosed, Frame

__all__ = ["ReceiveWorkers"]

log = logging.getLogger("transport.workers")

START_TIMEOUT = 60.0
"""Seconds a worker has to load its agents and say READY."""
RESTART_DELAYS = (0.5, 1, 2, 5, 10, 30)
"""Seconds before a dead worker is started again: longer each time one dies within a minute of its start."""
HANG_TIMEOUT = 30.0
"""Seconds a started worker may send nothing before it counts as hung and is killed."""
COUNTERS = "MSExchange Transport Receive Workers"
"""The counter set of the workers' lives: exits (a crash, kill -9, a hang's kill), hangs, restarts."""


def _worker_environment() -> dict[str, str]:
    """This environment, with the folder this `transport` package was imported from first on the path, so a
    worker runs the very code of its hub (a checkout beside an installed copy, say)."""
    here = str(Path(__file__).resolve().parent.parent)
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p))


class _Worker:
    """One worker process and its channel."""

    def __init__(self, slot: int, proc: asyncio.subprocess.Process, channel: Channel) -> None:
        self.slot = slot
        self.proc = proc
        self.channel = channel
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.started = time.monotonic()
        self.heard = self.started  # when its last frame came
        self.reader: asyncio.Task | None = None


class ReceiveWorkers:
    """Starts, feeds, restarts and stops the worker processes; `start(sockets)`, then `stop(grace)`."""

    def __init__(self, count: int, config: TransportConfig, submission: Submission, pipeline: Pipeline,
                 counters: Counters, rows: dict[str, Callable[[Any], None]]) -> None:
        self.count = count
        self.config = config
        self.submission = submission
        self.counters = counters
        self.rows = rows  # log prefix → where this process appends a worker's row
        self.workers: dict[int, _Worker] = {}
        self.restarts = 0
        self._sockets: list[list[socket.socket]] = []  # per slot - 1: that worker's listening sockets
        self._running = False
        self._pressure = False
        self._submits: set[asyncio.Task] = set()
        self._restarts: set[asyncio.Task] = set()
        self._quick_deaths = 0
        self._agents = {la.position: la for la in pipeline.agents}
        self.hang_timeout = HANG_TIMEOUT
        self._watchdog: asyncio.Task | None = None

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers.values()]

    async def start(self, sockets: list[list[socket.socket]]) -> None:
        """Start every worker on its sockets (`ReceiveConnectors.bind`) and wait until each listens; TransportError
        when one cannot."""
        self._sockets = sockets
        self._running = True
        for name in ("Worker Process Exits", "Hung Worker Processes Killed", "Worker Process Restarts"):
            self.counters.increment(COUNTERS, name, 0)  # the set is there (at 0) before anything happens
        self._pressure = self.submission.back_pressure
        try:
            await asyncio.gather(*(self._start(slot) for slot in range(1, self.count + 1)))
        except TransportError:
            self._running = False  # the hub does not start: neither restart nor keep the workers that did
            for worker in self.workers.values():
                if worker.proc.returncode is None:
                    worker.proc.kill()
            raise
        self._watchdog = asyncio.create_task(self._watch(), name="receive-worker-watchdog")

    async def _watch(self) -> None:
        """Kill a started worker that has sent nothing for `hang_timeout` seconds (its exit starts it again).

        A round that comes late (this process was stopped or starved itself) only notes the time: the silence
        it saw may be this process's, not the workers'."""
        tick = max(0.1, self.hang_timeout / 10)
        last = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            late, last = now - last > self.hang_timeout / 2, now
            for worker in self.workers.values():
                if late:
                    worker.heard = now
                elif (worker.ready.done() and worker.proc.returncode is None
                      and now - worker.heard > self.hang_timeout):
                    log.error("receive worker %d (pid %d) has sent nothing for %.0fs: its event loop is blocked "
                              "(an agent's blocking call?); killing it", worker.slot, worker.proc.pid, now - worker.heard)
                    worker.proc.kill()
                    worker.heard = now
                    self.counters.increment(COUNTERS, "Hung Worker Processes Killed")

    async def _start(self, slot: int) -> None:
        parent, child = socket.socketpair()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "transport.worker_process", "--channel", str(child.fileno()),
                "--event-loop", running_loop_kind().value, stdin=subprocess.DEVNULL, env=_worker_environment(),
                pass_fds=[child.fileno(), *(s.fileno() for s in self._sockets[slot - 1])])
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        worker = _Worker(slot, proc, Channel(reader, writer))
        self.workers[slot] = worker
        worker.channel.send(Frame.INIT, {
            "config": self.config, "slot": slot, "listening": [s.fileno() for s in self._sockets[slot - 1]],
            "spool_folder": self.submission.spool_folder, "sys_path": list(sys.path), "pressure": self._pressure,
            "log_level": logging.getLevelName(logging.getLogger().getEffectiveLevel())})
        worker.reader = asyncio.create_task(self._serve(worker), name=f"receive-worker-{slot}")
        try:
            pid = await asyncio.wait_for(asyncio.shield(worker.ready), START_TIMEOUT)
        except (asyncio.TimeoutError, ChannelClosed) as e:
            if proc.returncode is None:
                proc.kill()
            raise TransportError(f"receive worker {slot} did not start: "
                                 f"{'it exited' if isinstance(e, ChannelClosed) else 'no answer'}; see its log lines above") from None
        log.info("receive worker %d listening (pid %d)", slot, pid)

    async def _serve(self, worker: _Worker) -> None:
        """Take the worker's messages until its channel closes; then, unless the hub is stopping, start it again."""
        try:
            while True:
                messages = await worker.channel.receive()
                worker.heard = time.monotonic()
                for message in messages:
                    try:
                        self._handle(worker, message)
                    except Exception:  # one bad message must not stop the worker's channel
                        log.exception("receive worker %d: cannot handle %s", worker.slot, message[0])
        except ChannelClosed as e:
            if not worker.ready.done():
                worker.ready.set_exception(e)
        status = await worker.proc.wait()
        if self._running and self.workers.get(worker.slot) is worker:
            self._quick_deaths = self._quick_deaths + 1 if time.monotonic() - worker.started < 60 else 0
            delay = RESTART_DELAYS[min(self._quick_deaths, len(RESTART_DELAYS) - 1)]
            self.counters.increment(COUNTERS, "Worker Process Exits")
            log.error("receive worker %d (pid %d) exited with status %s; starting it again in %gs", worker.slot,
                      worker.proc.pid, status, delay)
            self._later(self._restarts, self._restart(worker.slot, delay))

    async def _restart(self, slot: int, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._running:
            try:
                await self._start(slot)
                self.restarts += 1
                self.counters.increment(COUNTERS, "Worker Process Restarts")
            except TransportError as e:  # its exit is seen by its channel's reader, which tries again later
                log.error("%s", e)

    @staticmethod
    def _later(tasks: set[asyncio.Task], coro: Any) -> None:
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _handle(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind is Frame.ROW:
            write = self.rows.get(message[1])
            if write is not None:
                write(message[2])
        elif kind is Frame.SUBMIT:
            self._later(self._submits, self._submit(worker, message[1], message[2]))
        elif kind is Frame.SUBMIT_AGENT:
            self._later(self._submits, self._submit(worker, message[1], message[2], message[3], message[4]))
        elif kind is Frame.COUNTS:
            self._count(message[1], message[2])
        elif kind is Frame.READY and not worker.ready.done():
            worker.ready.set_result(message[1])

    async def _submit(self, worker: _Worker, seq: int, item: MailItem, agent: str | None = None,
                      cause: MailItem | None = None) -> None:
        """Queue a worker's message (or an agent's, in a worker) and answer with its internal id."""
        internal_id: int | None = None
        error: str | None = None
        try:
            if agent is None:
                internal_id = await self.submission.submit(item)
            else:
                internal_id = await self.submission.submit_from_agent(item, agent, cause)
        except StoreError as e:
            error = str(e)
        except Exception as e:  # a bug here must not leave the session waiting
            log.exception("queuing a message from receive worker %d failed", worker.slot)
            error = f"{type(e).__name__}: {e}"
        self._pressure = self.submission.back_pressure
        worker.channel.send(Frame.SUBMITTED, seq, internal_id, error, self._pressure)

    def _count(self, counters: dict[str, dict[str, int]], agents: dict[int, tuple[int, int, int]]) -> None:
        for counter_set, values in counters.items():
            for name, by in values.items():
                self.counters.increment(counter_set, name, by)
        for position, (calls, errors, time_ns) in agents.items():
            la = self._agents.get(position)
            if la is not None:
                la.calls += calls
                la.errors += errors
                la.time_ns += time_ns

    def check_pressure(self) -> None:
        """Tell the workers when back pressure turned on or off (the hub's housekeeping calls this)."""
        pressure = self.submission.back_pressure
        if pressure != self._pressure:
            self._pressure = pressure
            for worker in self.workers.values():
                worker.channel.send(Frame.PRESSURE, pressure)

    async def stop(self, grace: float) -> None:
        """Tell every worker to stop (sessions may finish within `grace`); kill those still there after it."""
        self._running = False
        if self._watchdog is not None:
            self._watchdog.cancel()
        for task in list(self._restarts):
            task.cancel()
        for worker in self.workers.values():
            worker.channel.send(Frame.STOP, grace)
        waits = [asyncio.wait_for(w.proc.wait(), grace + 5) for w in self.workers.values()]
        for worker, result in zip(list(self.workers.values()), await asyncio.gather(*waits, return_exceptions=True)):
            if isinstance(result, asyncio.TimeoutError):
                log.warning("receive worker %d did not stop in time; killed", worker.slot)
                worker.proc.kill()
                await worker.proc.wait()
        await asyncio.gather(*(w.reader for w in self.workers.values() if w.reader is not None), return_exceptions=True)
        await asyncio.gather(*self._submits, *self._restarts, return_exceptions=True)
