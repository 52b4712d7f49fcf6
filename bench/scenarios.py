"""The scenarios: smtp (the main comparison), scaling, memory, pickup, spf. Each adds a section to the report
and, where the issue sets a target, a verdict."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace

import yaml
from pathlib import Path

from . import BENCH_DIR, REPO
from .disk import Settling
from .loadgen import LoadSpec
from .measure import RoundResult, Summary, log, measure_round, round_line
from .report import Report, fmt, fmt_ms, table
from .targets import (
    EXAMPLE_AGENT, RECIPIENT, ServerProcess, Target, backlog_at, discover_agents, memory_folder, pickup_supported,
    remove_at_end, spf_pass_sender, tracking_times,
)
from .verdicts import speed_verdicts

__all__ = ["Settings", "SessionMode", "build_targets", "smtp", "paced", "scaling", "memory", "pickup", "spf"]

ACCEPT_P99_MS = 50.0  # end of DATA → 250, at half the maximum rate
DELIVER_P99_MS = 100.0  # end of DATA → Maildir, at half the maximum rate


@dataclass
class Settings:
    quick: bool
    rounds: int
    sessions: int
    messages: int
    size: int
    messages_per_session: int  # the first mode of the smtp comparison, and the other scenarios' mode
    reuse: int  # messages per connection in the smtp comparison's second mode; 0: no second mode
    targets: list[str]
    workdir: Path
    keep: bool
    scaling_messages: int
    scaling_rounds: int
    memory_messages: int
    pickup_messages: int
    use_smtp_source: bool
    smtp_source_path: str | None = None
    smtp_source_rounds: int = 1
    baseline: Path | None = None  # another checkout (an earlier commit): its (c) is target (p)
    settling: Settling = field(default_factory=Settling)  # how the disk stood before the first round
    sender: str = "bench@fabrikam.com"

    @property
    def warmup(self) -> int:
        return 10 if self.quick else 100

    def spec(self, **changes) -> LoadSpec:
        base = LoadSpec(host="127.0.0.1", port=0, sessions=self.sessions, messages=self.messages, size=self.size,
                        messages_per_session=self.messages_per_session, sender=self.sender, recipient=RECIPIENT)
        return replace(base, **changes)


def build_targets(settings: Settings, report: Report) -> dict[str, Target]:
    """(a) bare aiosmtpd, (b) hub without agents, (c) hub with every built-in agent (one receive process per
    core, the hub's own among them: the default), (s) (c) in one process, (d) (c) on uvloop."""
    specs, notes = discover_agents()
    shipped = _shipped_agents()
    from transport.core.pipeline import resolve_class

    have = {resolve_class(a["class"]) for a in shipped}
    agents = shipped + [{"class": s} for s in specs if resolve_class(s) not in have] + [EXAMPLE_AGENT]
    sender, why = spf_pass_sender()
    settings.sender = sender
    targets = {
        "a": Target("a", "bare aiosmtpd (accept + discard)", "bare"),
        "b": Target("b", "hub, no agents", "hub", [], durable=True),
        "c": Target("c", "hub, all agents, durable queue, Maildir", "hub", agents, durable=True),
        "s": Target("s", "(c) in one process (`workers: 0`)", "hub", agents, durable=True, extra={"workers": 0}),
        "d": Target("d", "(c) on uvloop", "hub", agents, durable=True, uvloop=True),
        "m": Target("m", "(c) with its data root in memory (tmpfs)", "hub", agents, durable=True, in_memory=True),
        # Not in the default set; `--targets a,n,...` shows what the durable (fsync'd) queue costs.
        "n": Target("n", "hub, no agents, queue not durable", "hub", [], durable=False),
        # Not in the default set; `--targets a,c,w` shows what an open dashboard costs the receive path.
        "w": Target("w", "(c) with the dashboard open (overview and queues fetched every 2 s)", "hub", agents,
                    durable=True, dashboard=True),
    }
    if settings.baseline is not None:  # `--baseline`: the before of a change, in the same rounds as the after
        targets["p"] = Target("p", f"(c) at {_commit(settings.baseline)} (the baseline checkout)", "hub", agents,
                              durable=True, checkout=settings.baseline)
    lines = ["(c) and (d) run with these agents: those of the shipped `transport.yaml`, with its demo settings"
             " (block lists, blocked senders, phrases), then any other built-in agent (discovered as agent classes in"
             " modules under `agents/`) with its defaults; the example custom agent is added to exercise"
             " per-recipient and per-message hooks:", ""]
    lines += [f"- `{a['class']}`" + (" (shipped settings)" if a in shipped else "") for a in agents[:-1]] or [
        "- (no built-in agent class exists yet under `agents/`)"]
    lines += [f"- `{EXAMPLE_AGENT['class']}` (example custom agent; blocks a recipient the load never uses)"]
    if notes:
        lines += ["", "Left out:", ""] + [f"- {n}" for n in notes]
    lines += ["", f"Load: MAIL FROM `<{sender}>` ({why}), RCPT TO `<{RECIPIENT}>`."]
    settings.workdir.mkdir(parents=True, exist_ok=True)
    p50, p99, cpu = fsync_cost(settings.workdir)
    memory = memory_folder()
    in_memory = f" ({fsync_cost(memory, in_memory=True)[2]:.3f} ms on the memory file system)" if memory is not None else ""
    lines += ["", f"Disk under the work folder: writing a 4 KB file, fsync, rename and fsync of the folder (a"
              f" durable file written on its own; mailbox delivery makes a batch durable at once where it can, with"
              f" syncfs) takes {p50:.2f} ms p50 / {p99:.2f} ms p99, and {cpu:.3f} ms of CPU per file{in_memory}.",
              "", settings.settling.sentence()]
    if "m" in settings.targets and memory is None:
        settings.targets = [t for t in settings.targets if t != "m"]
        lines += ["", "(m) skipped: no memory file system (tmpfs at /dev/shm) to put its data root on."]
    if "d" in settings.targets:
        if importlib.util.find_spec("uvloop") is None:
            settings.targets = [t for t in settings.targets if t != "d"]
            lines += ["", "(d) skipped: uvloop is not installed (`.venv/bin/pip install uvloop` to include it)."]
    report.add("Targets and agents", lines)
    log(f"(c) agents: {', '.join(a['class'] for a in agents)}")
    return targets


def _commit(checkout: Path) -> str:
    """The short commit a checkout is at (or its path, when it is no git checkout of its own)."""
    if not (checkout / ".git").exists():  # a plain copy: not the commit of a repository it happens to sit in
        return str(checkout)
    try:
        return subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return str(checkout)


def _shipped_agents() -> list[dict]:
    """The agent entries of the shipped transport.yaml (the demo configuration), as the hub would read them."""
    try:
        data = yaml.safe_load((REPO / "transport.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []
    return [a for a in data.get("agents") or [] if isinstance(a, dict) and a.get("enabled", True)]


def fsync_cost(folder: Path, n: int = 100, in_memory: bool = False) -> tuple[float, float, float]:
    """ms per durable 4 KB file creation in `folder`: wall time p50 and p99, and the CPU it cost (mostly the
    kernel's) on average."""
    from .loadgen import percentile

    folder.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fsync-probe-", dir=folder))
    (work / "tmp").mkdir()
    (work / "new").mkdir(exist_ok=True)
    data = b"x" * 4096
    times = []
    cpu0 = time.process_time()
    for i in range(n):
        t0 = time.perf_counter()
        with open(work / "tmp" / str(i), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(work / "tmp" / str(i), work / "new" / str(i))
        fd = os.open(work / "new", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        times.append((time.perf_counter() - t0) * 1000)
    cpu1 = time.process_time()
    if in_memory:  # tmpfs: removing files costs later ones nothing, and no work folder (kept or not) holds it
        shutil.rmtree(work, ignore_errors=True)
    else:
        remove_at_end(work)
    cpu_ms = (cpu1 - cpu0) * 1000 / n
    return percentile(times, 50) or 0.0, percentile(times, 99) or 0.0, cpu_ms


async def run_alternating(targets: list[Target], spec: LoadSpec, rounds: int, settings: Settings,
                          label: str) -> dict[str, Summary]:
    """Rounds a, b, c, a, b, c, ... so that drift on the machine hits every target equally."""
    results: dict[str, list[RoundResult]] = {t.key: [] for t in targets}
    for i in range(1, rounds + 1):
        for t in targets:
            workdir = settings.workdir / f"{label}-{t.key}-r{i}"
            r = await measure_round(t, replace(spec, tag=f"r{i}"), workdir, warmup=settings.warmup, keep=settings.keep)
            results[t.key].append(r)
            log(f"[{label}] " + round_line(i, rounds, r))
    return {t.key: Summary(t, results[t.key]) for t in targets}


# -- smtp: the main comparison ------------------------------------------------------------------------------
COLUMNS = ("Python asyncio load generator (no pipelining, closed loop: each session sends as fast as the replies"
           " come). msg/s = accepted (250 after DATA) per second from the first connect to the last 250; end-to-end"
           " = delivered per second from the first connect to the last DELIVER row. Server CPU = the user + system"
           " time of the server's processes (a hub's and its receive workers') from the start of the load to the"
           " last delivery, per message; hub process CPU = the hub's own process alone (the queue, the categorizer,"
           " delivery, its share of the SMTP sessions: with enough cores for the workers, one core carrying it caps the hub at 1000 / that msg/s);"
           " \"CPU vs (a)\" = (a)'s CPU per message over the target's (the ratio if the server had a core to"
           " itself). Peak RSS sums the peaks of the server's processes.")


@dataclass(frozen=True)
class SessionMode:
    """How the load uses its connections in one comparison, and where that comparison's figures go."""

    per_session: int  # messages per connection before QUIT
    rounds: int
    key: str  # its entry in the JSON results

    @property
    def label(self) -> str:
        return ("a new connection per message" if self.per_session == 1
                else f"{self.per_session} messages per connection")


def session_modes(settings: Settings) -> list[SessionMode]:
    """The first mode (a new connection per message unless `--messages-per-session` chose one), then reused
    sessions (`--reuse`) with one round fewer, so that comparing both modes does not double the run."""
    modes = [SessionMode(settings.messages_per_session, settings.rounds, "smtp")]
    if settings.reuse:
        modes.append(SessionMode(settings.reuse, max(1, settings.rounds - 1), "smtp_reused"))
    return modes


async def smtp(settings: Settings, report: Report,
               targets: dict[str, Target]) -> list[tuple[SessionMode, dict[str, Summary]]]:
    """The comparison in each session mode, then (c) paced at half the rate it reached in the first mode."""
    chosen = [targets[k] for k in settings.targets]
    runs = [(mode, await _comparison(settings, report, chosen, mode, explain=i == 0))
            for i, mode in enumerate(session_modes(settings))]
    mode, sums = runs[0]
    if "c" in sums and sums["c"].median:
        await paced(settings, report, sums["c"], mode)
    else:
        log("smtp paced: left out, (c) is not among the targets or accepted nothing")
    return runs


async def _comparison(settings: Settings, report: Report, chosen: list[Target], mode: SessionMode,
                      explain: bool) -> dict[str, Summary]:
    """Every chosen target, round by round, in one session mode: the comparison table and its verdicts
    (`explain`: say what the columns mean, the first time)."""
    spec = settings.spec(messages_per_session=mode.per_session)
    log(f"smtp: {mode.rounds} round(s) of {spec.messages} messages, {spec.sessions} sessions, {spec.size} bytes,"
        f" {mode.label}, targets {', '.join(t.key for t in chosen)}")
    sums = await run_alternating(chosen, spec, mode.rounds, settings, mode.key.replace("_", "-"))
    base = sums.get("a")
    lines = [f"{mode.rounds} round(s) per target, alternating; each round {spec.messages} messages of"
             f" {spec.size:,} bytes over {spec.sessions} concurrent sessions, {mode.label}. "
             + (COLUMNS if explain else "Columns as in the first comparison."), ""]
    lines += table(["target", "msg/s (median)", "min", "max", "vs (a)", "accepted", "delivered",
                    "end-to-end msg/s", "RECEIVE→DELIVER p50 / p99 ms", "DATA→250 p50 / p99 ms",
                    "server CPU ms/msg", "hub process CPU ms/msg", "CPU vs (a)", "client CPU ms/msg",
                    "peak RSS MB"], [_target_row(s, base) for s in sums.values()])
    hubs = [s for s in sums.values() if s.target.is_hub]
    if hubs:
        lines += _delay_table(hubs) + _agent_table(hubs)
    lines += ["", "Every round, in the order run:", ""] + _rounds_table(sums, mode.rounds)
    problems = [f"- ({k}): {s.problems()}" for k, s in sums.items() if s.problems()]
    if problems:
        lines += ["", "Problems seen:", ""] + problems
    report.add(f"SMTP load: the comparison, {mode.label}", lines)
    report.results[mode.key] = {key: _summary_json(s, base) for key, s in sums.items()}
    if base and "c" in sums and base.median:
        _speed_verdicts(report, sums["c"], base, spec, mode)
    if base and "m" in sums and base.median:
        m = sums["m"]
        report.verdict(f"Without the disk, {mode.label}: (m), (c) with its data root in memory, is"
                       f" {m.median / base.median:.0%} of (a) ({m.median:.0f} msg/s, {m.server_cpu_ms_per_msg:.2f} ms of"
                       f" CPU per message): what the hub's own work costs when this machine's disk costs nothing.")
    return sums


def _target_row(s: Summary, base: Summary | None) -> list[str]:
    ratio = s.median / base.median if base and base.median else None
    cpu = s.server_cpu_ms_per_msg
    cpu_ratio = base.server_cpu_ms_per_msg / cpu if base and base.server_cpu_ms_per_msg and cpu else None
    return [f"({s.target.key}) {s.target.label}", fmt(s.median), fmt(min(s.rates)), fmt(max(s.rates)),
            fmt(ratio * 100, 0, " %") if ratio is not None else "n/a",
            f"{s.accepted}/{s.sent}", "n/a" if s.delivered is None else f"{s.delivered}",
            fmt(s.delivered_median), fmt_ms(s.latency(50), s.latency(99)),
            fmt_ms(s.accept_latency(50), s.accept_latency(99)), fmt(cpu, 2),
            fmt(s.hub_cpu_ms_per_msg, 2) if s.target.is_hub else "n/a",
            fmt(cpu_ratio * 100, 0, " %") if cpu_ratio is not None else "n/a",
            fmt(s.client_cpu_ms_per_msg, 2), fmt(s.peak_rss_mb, 0)]


def _delay_table(hubs: list[Summary]) -> list[str]:
    """RECEIVE→DELIVER split where the tracking log can: waiting for the categorizer, then the delivery."""
    rows = [[f"({s.target.key}) {s.target.label}", fmt_ms(s.latency(50, "queued_ms"), s.latency(99, "queued_ms")),
             fmt_ms(s.latency(50, "delivery_ms"), s.latency(99, "delivery_ms")), fmt_ms(s.latency(50), s.latency(99))]
            for s in hubs]
    return ["", "Where the delay from end of DATA to delivery goes (tracking log; ms, p50 / p99):", ""] + table(
        ["target", "RECEIVE→SUBMIT (waiting for the categorizer)",
         "SUBMIT→DELIVER (categorize, route, Maildir write)", "RECEIVE→DELIVER"], rows)


def _rounds_table(sums: dict[str, Summary], rounds: int) -> list[str]:
    """One row per round in the order run, with the load average before it: what moved between rounds."""
    detail = []
    for i in range(rounds):
        for key, s in sums.items():
            if i < len(s.rounds):
                r = s.rounds[i]
                detail.append([i + 1, f"({key})", fmt(r.rate), "n/a" if r.delivered is None else r.delivered,
                               fmt(r.delivered_rate), fmt(r.server_cpu_s * 1000 / max(1, r.load.accepted), 2),
                               fmt(r.peak_rss_kb / 1024), f"{r.loadavg:.2f}"])
    return table(["round", "target", "msg/s", "delivered", "end-to-end msg/s", "server CPU ms/msg",
                  "peak RSS MB", "load average before"], detail)


def _speed_verdicts(report: Report, c: Summary, base: Summary, spec: LoadSpec, mode: SessionMode) -> None:
    """(c) against the ratio target, and the rates its own (queue) process and this machine's cores cap it at."""
    speed_verdicts(report, f"{spec.sessions} sessions × {spec.size:,} B, {mode.label}", c.median, base.median,
                   c.hub_cpu_ms_per_msg, c.server_cpu_ms_per_msg, c.client_cpu_ms_per_msg)


# -- smtp: latency at half the maximum rate ----------------------------------------------------------------------
async def paced(settings: Settings, report: Report, closed: Summary, mode: SessionMode) -> None:
    """(c) paced (open loop) at half the median rate it reached closed loop: its latencies when it is not the
    bottleneck, against the issue's p99 targets."""
    t, rate = closed.target, closed.median / 2
    spec = settings.spec(messages_per_session=mode.per_session, rate=rate, tag="paced")
    log(f"smtp paced: {spec.messages} messages to ({t.key}) at {rate:.0f} msg/s, {mode.label}")
    r = await measure_round(t, spec, settings.workdir / f"smtp-paced-{t.key}",
                            warmup=settings.warmup, keep=settings.keep)
    log("[smtp-paced] " + round_line(1, 1, r))
    s = Summary(t, [r])
    lines = [f"({t.key}) paced (open loop): messages start {1000 / rate:.1f} ms apart over {spec.sessions} sessions"
             f" ({rate:.0f} msg/s, half the median (c) reached in the closed-loop rounds above, {closed.median:.0f}"
             f" msg/s); a session late for its slot starts at once. One round of {spec.messages} messages;"
             f" \"reached\" below the paced rate means the hub fell behind. DATA→250: the client's wait from the end"
             f" of DATA to the 250; RECEIVE→DELIVER: the tracking log, from the RECEIVE row (written when the"
             f" message is committed, just before the 250) to the DELIVER row (Maildir written).", ""]
    lines += table(["target", "paced at msg/s", "reached msg/s", "accepted", "delivered", "DATA→250 p50 / p99 ms",
                    "RECEIVE→DELIVER p50 / p99 ms", "server CPU ms/msg", "peak RSS MB"],
                   [[f"({t.key}) {t.label}", fmt(rate), fmt(r.rate), f"{s.accepted}/{s.sent}", f"{s.delivered}",
                     fmt_ms(s.accept_latency(50), s.accept_latency(99)), fmt_ms(s.latency(50), s.latency(99)),
                     fmt(s.server_cpu_ms_per_msg, 2), fmt(s.peak_rss_mb, 0)]])
    if s.problems():
        lines += ["", f"Problems seen: {s.problems()}"]
    report.add(f"SMTP latency at half the maximum rate, {mode.label}", lines)
    report.results["smtp_paced"] = {t.key: {**_summary_json(s, None), "paced_msg_per_s": rate}}
    for what, p99, limit in (("end of DATA → 250", s.accept_latency(99), ACCEPT_P99_MS),
                             ("end of DATA → Maildir (RECEIVE→DELIVER)", s.latency(99), DELIVER_P99_MS)):
        ok = p99 is not None and p99 < limit
        report.verdict(f"{'MET' if ok else 'MISSED'}: p99 {what} for (c) at half its maximum rate ({rate:.0f}"
                       f" msg/s, {mode.label}) is {fmt(p99, 1)} ms (target < {limit:.0f} ms).")


def _agent_table(hubs: list[Summary]) -> list[str]:
    """What each agent costs per message: its hooks' own time on the event loop (the pipeline times each step of
    a hook, not its waits), from the hub's counters at shutdown, warm-up included; median of the rounds."""
    per_target = {s.target.key: d for s in hubs if (d := s.agent_us_per_msg)}  # the targets with agents
    names = list(dict.fromkeys(n for d in per_target.values() for n in d))
    if not names:
        return []
    cpu = {s.target.key: (s.server_cpu_ms_per_msg or 0) * 1000 for s in hubs}
    rows = [[name] + [f"{d[name]:.0f} ({d[name] / cpu[k]:.1%})" if name in d and cpu[k] else "n/a"
                      for k, d in per_target.items()] for name in names]
    rows.append(["all agents"] + [f"{sum(d.values()):.0f} ({sum(d.values()) / cpu[k]:.1%})" if cpu[k] else "n/a"
                                  for k, d in per_target.items()])
    return ["", "What each agent costs: µs per message in its hooks on the event loop (its own steps, not its waits;"
            " median of the rounds, warm-up included), and its share of the server's CPU per message:", ""] + table(
        ["agent"] + [f"({k})" for k in per_target], rows)


def _summary_json(s: Summary, base: Summary | None) -> dict:
    cpu = s.server_cpu_ms_per_msg
    return {"label": s.target.label, "messages_per_session": s.rounds[0].load.spec.messages_per_session,
            "msg_per_s": s.median, "rounds_msg_per_s": s.rates,
            "vs_a": s.median / base.median if base and base.median else None,
            "server_cpu_ms_per_msg": cpu, "hub_process_cpu_ms_per_msg": s.hub_cpu_ms_per_msg,
            "client_cpu_ms_per_msg": s.client_cpu_ms_per_msg,
            "data_to_250_ms": {"p50": s.accept_latency(50), "p99": s.accept_latency(99)},
            "receive_to_deliver_ms": {"p50": s.latency(50), "p99": s.latency(99)},
            "end_to_end_msg_per_s": s.delivered_median, "peak_rss_mb": s.peak_rss_mb,
            "agent_us_per_msg": s.agent_us_per_msg}


# -- scaling ----------------------------------------------------------------------------------------------------
async def scaling(settings: Settings, report: Report, targets: dict[str, Target]) -> None:
    n4k = settings.scaling_messages
    points = [  # (sessions, size, messages per session, messages)
        (1, 4096, settings.messages_per_session, max(10, n4k // 2)),
        (10, 4096, settings.messages_per_session, n4k),
        (50, 4096, settings.messages_per_session, n4k),
        (10, 100 * 1024, settings.messages_per_session, max(10, n4k // 2)),
        (10, 5 * 1024 * 1024, settings.messages_per_session, max(4, n4k // 25)),
        (10, 4096, 100, n4k),
    ]
    chosen = [targets[k] for k in ("a", "c") if k in settings.targets]
    rows = []
    for sessions, size, mps, count in points:
        spec = settings.spec(sessions=sessions, size=size, messages_per_session=mps, messages=count)
        label = f"scaling-{sessions}x{size}-{mps}"
        log(f"scaling: {sessions} session(s), {size:,} bytes, {mps} message(s)/session, {count} messages")
        sums = await run_alternating(chosen, spec, settings.scaling_rounds, settings, label)
        a, c = sums.get("a"), sums.get("c")
        ratio = c.median / a.median if a and c and a.median else None
        rows.append([sessions, _size(size), mps, count,
                     fmt(a.median) if a else "n/a", fmt(c.median) if c else "n/a",
                     fmt(ratio * 100, 0, " %") if ratio is not None else "n/a",
                     fmt(c.delivered_median) if c else "n/a",
                     fmt_ms(c.latency(50), c.latency(99)) if c else "n/a",
                     fmt(c.server_cpu_ms_per_msg, 2) if c else "n/a",
                     fmt(a.peak_rss_mb) if a else "n/a", fmt(c.peak_rss_mb) if c else "n/a",
                     "; ".join(f"({k}) {s.problems()}" for k, s in sums.items() if s.problems())])
    report.add("Scaling: sessions, message size, session reuse", [
        f"(a) bare aiosmtpd against (c) the full pipeline; {settings.scaling_rounds} round(s) per point"
        " (median), reduced counts (`--scaling-messages` sets the 4 KB count).", "",
        *table(["sessions", "size", "msgs/session", "messages", "(a) msg/s", "(c) msg/s", "(c) vs (a)",
                "(c) end-to-end msg/s", "(c) RECEIVE→DELIVER p50 / p99 ms", "(c) server CPU ms/msg",
                "(a) peak RSS MB", "(c) peak RSS MB", "problems"], rows)])


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n // (1024 * 1024)} MB"
    if n >= 1024:
        return f"{n // 1024} KB"
    return f"{n} B"


# -- memory -----------------------------------------------------------------------------------------------------
async def memory(settings: Settings, report: Report, targets: dict[str, Target]) -> None:
    t = targets["c"]
    n = settings.memory_messages
    spec = settings.spec(messages=n, tag="memory")
    log(f"memory: {n:,} messages to ({t.key}) {t.label}, {spec.sessions} sessions, {spec.size} bytes")
    workdir = settings.workdir / "memory-c"
    r = await measure_round(t, spec, workdir, warmup=settings.warmup, keep=True, sample_rss=0.5)
    load_end = r.load.started_wall + r.load.elapsed
    received, waiting_categorizer, waiting_delivery = backlog_at(workdir / "var", load_end)
    queue_files = {f.name: f.stat().st_size for f in (workdir / "var" / "queue").glob("mail.que*")}
    if not settings.keep:
        remove_at_end(workdir)
    samples = r.rss_samples
    if not samples:
        report.add("Memory over a long run", ["No samples (the server did not run)."])
        return

    def at(fraction: float) -> tuple[int, int]:
        goal = fraction * n
        return min(samples, key=lambda s: abs(s[0] - goal))

    points = [("start (after warm-up)", samples[0]), ("5 %", at(0.05)), ("10 %", at(0.10)), ("25 %", at(0.25)),
              ("middle (50 %)", at(0.5)), ("75 %", at(0.75)), ("end of load", samples[-1])]
    rows = [[name, f"{acc:,}", fmt(kb / 1024, 1)] for name, (acc, kb) in points]
    rows.append(["after every delivery", f"{r.delivered or 0:,} delivered", fmt(r.rss_after_delivery_kb / 1024, 1)])
    mid, end = at(0.5)[1], samples[-1][1]
    growth = (end - mid) / 1024
    per_10k = growth / max(1, (samples[-1][0] - at(0.5)[0]) / 10_000)
    flat = end <= mid * 1.10
    report.add(f"Memory over {n:,} messages", [
        f"({t.key}) {t.label}; {spec.sessions} sessions × {spec.size:,} B, {spec.messages_per_session} message(s) per"
        f" session; server VmRSS sampled every 0.5 s. {r.load.accepted:,} accepted at {r.rate:.0f} msg/s,"
        f" {r.delivered or 0:,} delivered; peak RSS {r.peak_rss_kb / 1024:.1f} MB.", "",
        *table(["point", "accepted so far", "VmRSS MB"], rows), "",
        f"Second half: {growth:+.1f} MB ({growth / max(mid / 1024, 1e-9):+.1%}), {per_10k:+.2f} MB per 10,000 messages."
        + (f" Replies other than 250: {r.load.problems()}." if r.load.problems() else ""), "",
        f"In memory when the load ended (tracking log): {received:,} received, {waiting_categorizer:,} waiting for"
        f" the categorizer (RECEIVE without SUBMIT), {waiting_delivery:,} waiting for delivery (SUBMIT without"
        f" DELIVER). Messages accepted faster than they are delivered wait in memory, so RSS follows that"
        f" backlog; it is not given back to the system once the backlog drains.", "",
        "Queue database after the run (the hub stopped, every message delivered): "
        + ", ".join(f"{name} {size / 1024 / 1024:.1f} MB" for name, size in sorted(queue_files.items()))
        + f"; together {sum(queue_files.values()) / 1024 / 1024:.1f} MB (target: under 20 MB)."])
    full = n >= 100_000
    report.verdict(f"{'MET' if flat else 'MISSED'}: memory {'flat' if flat else 'grows'} over {n:,} messages"
                   f" (middle {mid / 1024:.1f} MB → end {end / 1024:.1f} MB; flat = end ≤ middle + 10 %)"
                   + ("" if full else " — reduced count; `--scenario memory` runs 100,000"))


# -- large messages ---------------------------------------------------------------------------------------------
async def large(settings: Settings, report: Report, targets: dict[str, Target]) -> None:
    """Ten messages of 30 MB at once: peak memory of the hub against the bare server, and what it keeps after."""
    size, count = (2 if settings.quick else 30) * 1024 * 1024, 10
    spec = settings.spec(messages=count, sessions=count, size=size, tag="large")
    rows, peaks = [], {}
    for key in ("a", "c"):
        t = targets[key]
        log(f"large: {count} × {_size(size)} at once to ({t.key}) {t.label}")
        r = await measure_round(t, spec, settings.workdir / f"large-{key}", warmup=0, sample_rss=0.1)
        before = r.rss_samples[0][1] / 1024 if r.rss_samples else 0.0
        peaks[key] = r.peak_rss_kb / 1024
        rows.append([f"({t.key}) {t.label}", f"{r.load.accepted}/{count}", "n/a" if r.delivered is None else str(r.delivered),
                     fmt(before, 1), fmt(peaks[key], 1), fmt(r.rss_after_delivery_kb / 1024, 1)])
    ratio = peaks["c"] / max(peaks["a"], 1e-9)
    report.add(f"Large messages: {count} × {_size(size)} at once", [
        f"{count} sessions each sending one {_size(size)} message at the same time; server VmRSS sampled every"
        " 0.1 s. The hub spools a body past 1 MB to a file as it arrives and keeps only the header block in"
        " memory; the bare server keeps every message whole.", "",
        *table(["target", "accepted", "delivered", "RSS before MB", "peak RSS MB", "RSS after delivery MB"], rows)])
    report.verdict(f"{'MET' if ratio <= 2 else 'MISSED'}: {count} × {_size(size)} at once peak at {peaks['c']:.0f} MB"
                   f" in the hub against {peaks['a']:.0f} MB for bare aiosmtpd ({ratio:.2f}×; target ≤ 2×)")


# -- pickup -----------------------------------------------------------------------------------------------------
def _pickup_file(i: int, sender: str, size: int) -> bytes:
    from .loadgen import make_body

    head = (f"From: Bench <{sender}>\r\nTo: Alice <{RECIPIENT}>\r\nSubject: bench pickup {i}\r\n"
            f"Date: Thu, 26 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{i}.pickup@loadgen.bench.test>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n").encode()
    return head + make_body(size)[:-3]


async def pickup(settings: Settings, report: Report, targets: dict[str, Target]) -> None:
    why = pickup_supported()
    if why is not None:
        report.add("Pickup: files dropped at once vs SMTP", [f"Skipped: {why}. The scenario runs by itself once"
                   " the configuration has a `pickup` section and the watcher exists; files are dropped into"
                   " `<data_root>/pickup/*.eml`."])
        return
    t = targets["c"]
    n = settings.pickup_messages
    server = ServerProcess(t, settings.workdir / "pickup-c")
    (server.data_root / "pickup").mkdir(parents=True, exist_ok=True)
    staging = server.data_root / "pickup-staging"
    staging.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (staging / f"bench-{i:06d}.eml").write_bytes(_pickup_file(i, settings.sender, settings.size))
    await server.start(pickup=True)
    try:
        cpu0 = server.cpu_seconds()
        t0_wall = time.time()
        t0 = time.monotonic()
        for f in sorted(staging.iterdir()):
            os.rename(f, server.data_root / "pickup" / f.name)
        delivered = await server.wait_delivered(n, stall=30, deadline=max(120.0, n * 0.05))
        elapsed = time.monotonic() - t0
        cpu = server.cpu_seconds() - cpu0
        peak = server.memory_kb().get("VmHWM", 0)
    finally:
        await server.stop()
    times = tracking_times(server.data_root, "pickup")
    lat = times.total_ms
    if times.last_deliver is not None:
        elapsed = max(1e-6, times.last_deliver - t0_wall)
    if not settings.keep:
        server.cleanup()
    pickup_rate = delivered / elapsed if elapsed else 0.0
    pickup_accepted = (times.received / max(1e-6, times.last_receive - t0_wall)) if times.last_receive else None
    spec = settings.spec(messages=n, tag="pk")
    r = await measure_round(t, spec, settings.workdir / "pickup-smtp-c", warmup=settings.warmup, keep=settings.keep)
    smtp_rate = r.delivered_rate or 0.0
    from .loadgen import percentile
    rows = [["pickup (files dropped at once)", f"{delivered:,}/{n:,}", fmt(pickup_rate), fmt(pickup_accepted),
             fmt_ms(percentile(lat, 50), percentile(lat, 99)), fmt(cpu * 1000 / max(1, delivered), 2),
             fmt(peak / 1024)],
            [f"SMTP ({spec.sessions} sessions)", f"{r.delivered or 0:,}/{n:,}", fmt(smtp_rate), fmt(r.rate),
             fmt_ms(percentile(r.latencies_ms, 50), percentile(r.latencies_ms, 99)),
             fmt(r.server_cpu_s * 1000 / max(1, r.load.accepted), 2), fmt(r.peak_rss_kb / 1024)]]
    note = ("" if delivered >= n else
            f" Pickup delivered only {delivered:,} of {n:,} files before the bench gave up waiting.")
    report.add("Pickup: files dropped at once vs SMTP", [
        f"({t.key}) {t.label}; {n:,} messages of {settings.size:,} B. Pickup: all files renamed into"
        " `<data_root>/pickup/` at once (`pickup.max_messages_per_minute: 0`, i.e. not throttled), timed to the"
        " last DELIVER row." + note, "",
        *table(["source", "delivered", "end-to-end msg/s", "accepted msg/s (pickup: RECEIVE rows)",
                "RECEIVE→DELIVER p50 / p99 ms",
                "server CPU ms/msg", "peak RSS MB"], rows)])
    ok = pickup_rate >= smtp_rate
    report.verdict(f"{'MET' if ok else 'MISSED'}: pickup {pickup_rate:.0f} msg/s vs SMTP {smtp_rate:.0f} msg/s"
                   " end to end (target: pickup ≥ SMTP)")


# -- spf --------------------------------------------------------------------------------------------------------
async def spf(settings: Settings, report: Report) -> None:
    script = BENCH_DIR / "spf_bench.py"
    if not script.exists():
        report.add("Sender ID: the engine vs pyspf", ["Skipped: `bench/spf_bench.py` does not exist yet."])
        return
    log("spf: running bench/spf_bench.py")
    t0 = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.spf_bench", cwd=REPO, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(REPO)))
        out, err = await asyncio.wait_for(proc.communicate(), timeout=900)
    except asyncio.TimeoutError:
        proc.kill()
        report.add("Sender ID: the engine vs pyspf", ["`bench/spf_bench.py` did not finish within 900 s."])
        return
    text = out.decode(errors="replace").rstrip()
    lines = [f"Output of `python -m bench.spf_bench` (exit status {proc.returncode},"
             f" {time.monotonic() - t0:.1f} s):", ""]
    lines += text.splitlines() if text else ["(no output)"]
    if proc.returncode != 0:
        lines += ["", "stderr (last lines):", "", "```"] + err.decode(errors="replace").strip().splitlines()[-10:] + ["```"]
    report.add("Sender ID: the engine vs pyspf", lines)
