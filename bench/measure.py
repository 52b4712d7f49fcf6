"""One measured round against one target, and the summary of several rounds.

A round: start the target's server, warm it up (a few messages, not counted), send the load, wait until every
accepted message is in the Maildir (hub targets), read the server's peak RSS and CPU time, stop it with
SIGTERM, then read RECEIVE → DELIVER times from its message tracking log.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from .loadgen import LoadResult, LoadSpec, percentile, run_load
from .targets import ServerProcess, Target, TrackingTimes, tracking_times

__all__ = ["RoundResult", "Summary", "measure_round", "summarize", "round_line", "log"]


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries the result tables."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class RoundResult:
    target: Target
    load: LoadResult
    delivered: int | None = None  # None: the target does not deliver (bare aiosmtpd)
    e2e_s: float | None = None  # first connect -> last DELIVER row
    times: TrackingTimes = field(default_factory=TrackingTimes)  # RECEIVE / SUBMIT / DELIVER delays
    peak_rss_kb: int = 0
    server_cpu_s: float = 0.0
    hub_cpu_s: float = 0.0  # the server's own process alone (a hub's queue process, without its receive workers)
    rss_samples: list[tuple[int, int]] = field(default_factory=list)  # (accepted so far, VmRSS kB)
    rss_after_delivery_kb: int = 0
    exit_status: int | None = None
    stderr_tail: str = ""
    loadavg: float = 0.0  # 1-minute load average when the round started
    agent_time_us: dict[str, int] = field(default_factory=dict)  # per agent, time in its hooks (hub's counters.json)
    agent_messages: int = 0  # the messages that time covers: warm-up and load

    @property
    def agent_us_per_msg(self) -> dict[str, float]:
        return {name: us / self.agent_messages for name, us in self.agent_time_us.items()} if self.agent_messages else {}

    @property
    def latencies_ms(self) -> list[float]:
        return self.times.total_ms

    @property
    def rate(self) -> float:
        return self.load.rate

    @property
    def delivered_rate(self) -> float | None:
        if self.delivered is None or not self.e2e_s:
            return None
        return min(self.delivered, self.load.accepted) / self.e2e_s


async def measure_round(target: Target, spec: LoadSpec, workdir: Path, warmup: int = 50, keep: bool = False,
                        sample_rss: float | None = None, on_ready: Callable[[ServerProcess], None] | None = None,
                        pickup: bool = False, profile: list[str] | None = None) -> RoundResult:
    server = ServerProcess(target, workdir)
    loadavg = os.getloadavg()[0]
    await server.start(pickup=pickup, profile=profile)
    result: RoundResult
    try:
        spec = replace(spec, host=server.host, port=server.port)
        warm_accepted = 0
        if warmup:
            warm = await run_load(replace(spec, messages=warmup, sessions=min(spec.sessions, 5), tag="warmup",
                                         rate=None))
            warm_accepted = warm.accepted
            if target.is_hub:
                await server.wait_delivered(warm_accepted, stall=10)
        if on_ready is not None:
            on_ready(server)
        load = LoadResult(spec)
        result = RoundResult(target, load, loadavg=loadavg)
        sampler = None
        if sample_rss:
            async def sample() -> None:
                while True:
                    result.rss_samples.append((load.accepted, server.memory_kb().get("VmRSS", 0)))
                    await asyncio.sleep(sample_rss)
            sampler = asyncio.create_task(sample())
        cpu0, hub_cpu0 = server.cpu_seconds(), server.own_cpu_seconds()
        try:
            await run_load(spec, load)
        finally:
            if sampler is not None:
                sampler.cancel()
        if sample_rss:
            result.rss_samples.append((load.accepted, server.memory_kb().get("VmRSS", 0)))
        if target.is_hub:
            result.delivered = await server.wait_delivered(warm_accepted + load.accepted) - warm_accepted
        result.server_cpu_s = server.cpu_seconds() - cpu0
        result.hub_cpu_s = server.own_cpu_seconds() - hub_cpu0
        mem = server.memory_kb()
        result.peak_rss_kb = mem.get("VmHWM", 0)
        result.rss_after_delivery_kb = mem.get("VmRSS", 0)
    finally:
        status = await server.stop()
    result.exit_status = status
    if status not in (0, None) and status != -15:
        result.stderr_tail = server.stderr_tail()
    if target.is_hub:
        result.times = tracking_times(server.data_root, spec.tag)
        result.agent_time_us, result.agent_messages = _agent_times(server.data_root), warm_accepted + load.accepted
        if result.times.last_deliver is not None:
            result.e2e_s = max(1e-6, result.times.last_deliver - load.started_wall)
    if not keep:
        server.cleanup()
    return result


def _agent_times(data_root: Path) -> dict[str, int]:
    """Each agent's time in its hooks (µs), from the snapshot the hub writes at shutdown."""
    try:
        agents = json.loads((data_root / "logs" / "counters.json").read_text(encoding="utf-8")).get("agents", {})
    except (OSError, ValueError):
        return {}
    return {name: int(a.get("time_us", 0)) for name, a in agents.items()}


@dataclass
class Summary:
    target: Target
    rounds: list[RoundResult]

    @property
    def rates(self) -> list[float]:
        return [r.rate for r in self.rounds]

    @property
    def median(self) -> float:
        return statistics.median(self.rates) if self.rounds else 0.0

    @property
    def delivered_rates(self) -> list[float]:
        return [r.delivered_rate for r in self.rounds if r.delivered_rate is not None]

    @property
    def delivered_median(self) -> float | None:
        rates = self.delivered_rates
        return statistics.median(rates) if rates else None

    def latency(self, p: float, stage: str = "total_ms") -> float | None:
        """Percentile of a tracking-log delay pooled over the rounds: total_ms, queued_ms or delivery_ms."""
        return percentile([x for r in self.rounds for x in getattr(r.times, stage)], p)

    def accept_latency(self, p: float) -> float | None:
        return percentile([x for r in self.rounds for x in r.load.accept_latency_ms], p)

    @property
    def peak_rss_mb(self) -> float:
        return max((r.peak_rss_kb for r in self.rounds), default=0) / 1024

    @property
    def server_cpu_ms_per_msg(self) -> float | None:
        values = [r.server_cpu_s * 1000 / r.load.accepted for r in self.rounds if r.load.accepted]
        return statistics.median(values) if values else None

    @property
    def hub_cpu_ms_per_msg(self) -> float | None:
        """The server's own process alone: with receive workers, the queue process (and its share of the
        sessions), which one core must carry."""
        values = [r.hub_cpu_s * 1000 / r.load.accepted for r in self.rounds if r.load.accepted]
        return statistics.median(values) if values else None

    @property
    def client_cpu_ms_per_msg(self) -> float | None:
        values = [r.load.client_cpu_s * 1000 / r.load.accepted for r in self.rounds if r.load.accepted]
        return statistics.median(values) if values else None

    @property
    def agent_us_per_msg(self) -> dict[str, float]:
        """Per agent, the median over the rounds of its time in hooks per message (µs)."""
        per_round = [r.agent_us_per_msg for r in self.rounds if r.agent_messages]
        names = list(dict.fromkeys(n for d in per_round for n in d))
        return {n: statistics.median(d.get(n, 0.0) for d in per_round) for n in names}

    @property
    def accepted(self) -> int:
        return sum(r.load.accepted for r in self.rounds)

    @property
    def sent(self) -> int:
        return sum(r.load.spec.messages for r in self.rounds)

    @property
    def delivered(self) -> int | None:
        if not self.target.is_hub:
            return None
        return sum(r.delivered or 0 for r in self.rounds)

    def problems(self) -> str:
        notes = [r.load.problems() for r in self.rounds if r.load.problems()]
        notes += [f"exit status {r.exit_status}: {r.stderr_tail}" for r in self.rounds if r.stderr_tail]
        return "; ".join(dict.fromkeys(notes))


def summarize(target: Target, rounds: list[RoundResult]) -> Summary:
    return Summary(target, rounds)


def round_line(i: int, n: int, r: RoundResult) -> str:
    parts = [f"round {i}/{n} ({r.target.key}) {r.target.label}: {r.load.accepted}/{r.load.spec.messages} accepted,"
             f" {r.rate:.0f} msg/s"]
    if r.delivered is not None:
        dr = r.delivered_rate
        parts.append(f"{r.delivered} delivered" + (f" ({dr:.0f}/s end to end)" if dr else ""))
    parts.append(f"peak RSS {r.peak_rss_kb / 1024:.0f} MB")
    if r.load.problems():
        parts.append(f"problems: {r.load.problems()}")
    return ", ".join(parts)

