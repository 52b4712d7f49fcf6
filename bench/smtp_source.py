"""The smtp scenario's second load generator: Postfix's `smtp-source` (C, no per-message replies) against every
chosen target, rounds alternating, when it is installed or named with `--smtp-source PATH`."""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import statistics
import time
from typing import NamedTuple

from .measure import log
from .report import Report, fmt, table
from .scenarios import Settings
from .targets import RECIPIENT, ServerProcess, Target
from .verdicts import speed_verdicts

__all__ = ["smtp_source"]


async def smtp_source(settings: Settings, report: Report, targets: dict[str, Target]) -> None:
    """A new connection per message, then (unless `--reuse 0` or `--messages-per-session` chose one mode) each
    session's connection kept for all its messages (`-d`), each mode in its own table."""
    tool = settings.smtp_source_path or shutil.which("smtp-source") or next(
        (p for p in ("/usr/sbin/smtp-source", "/usr/bin/smtp-source") if os.path.exists(p)), None)
    if not settings.use_smtp_source:
        return
    if tool is None:
        report.add("SMTP load with Postfix's smtp-source", [
            "Skipped: `smtp-source` is not installed (Debian/Ubuntu: `apt-get install postfix`, or unpack the"
            " package and pass `--smtp-source PATH`)."])
        return
    spec = settings.spec()
    modes = [spec.messages_per_session > 1]
    if spec.messages_per_session == 1 and settings.reuse:
        modes.append(True)
    lines: list[str] = []
    for keep in modes:
        lines += await _mode(tool, keep, settings, report, [targets[k] for k in settings.targets])
    report.add("SMTP load with Postfix's smtp-source", lines)


class _Round(NamedTuple):
    """One smtp-source run against one target: msg/s, messages delivered (None for (a)), and CPU seconds of the
    server's processes, of the hub's own process, and of smtp-source."""

    rate: float
    delivered: int | None
    cpu: float
    own: float
    client: float


async def _run(cmd: list[str], messages: int) -> tuple[asyncio.subprocess.Process, bytes]:
    """smtp-source sending `messages`; the ended process and what it wrote to stderr."""
    proc = await asyncio.create_subprocess_exec(*cmd[:1], "-m", str(messages), *cmd[1:],
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    return proc, err


def _children_cpu() -> float:
    """User + system seconds of this process's children that have ended (smtp-source, once waited for)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


async def _mode(tool: str, keep: bool, settings: Settings, report: Report, chosen: list[Target]) -> list[str]:
    """`--smtp-source-rounds` rounds alternating over the targets, one session mode: its table's lines, and (c)'s
    verdicts against (a)."""
    spec = settings.spec()
    mode = "each session's connection kept for all its messages (-d)" if keep else "a new connection per message"
    results: dict[str, list[_Round]] = {t.key: [] for t in chosen}
    rounds = settings.smtp_source_rounds
    for i in range(1, rounds + 1):
        for t in chosen:
            server = ServerProcess(t, settings.workdir / f"smtp-source-{t.key}-{'d' if keep else 'new'}-r{i}")
            await server.start()
            try:
                cmd = [tool, "-s", str(spec.sessions), "-l", str(spec.size),
                       "-f", spec.sender, "-t", RECIPIENT, "-M", "loadgen.bench.test"]
                if keep:
                    cmd.append("-d")  # keep the connection for the next message
                cmd.append(f"{server.host}:{server.port}")
                warm = settings.warmup  # as the bench client's rounds: a hub's first messages start its
                await _run(cmd, warm)  # mailbox delivery process and fill its caches; (a) is warmed alike
                if t.is_hub:
                    await server.wait_delivered(warm, stall=10)
                cpu0, own0, client0 = server.cpu_seconds(), server.own_cpu_seconds(), _children_cpu()
                t0 = time.monotonic()
                proc, err = await _run(cmd, spec.messages)
                elapsed = time.monotonic() - t0
                client = _children_cpu() - client0  # the servers are still running: only smtp-source ended
                delivered = None
                if t.is_hub:
                    delivered = await server.wait_delivered(warm + spec.messages) - warm
                cpu, own = server.cpu_seconds() - cpu0, server.own_cpu_seconds() - own0
                if proc.returncode != 0:
                    log(f"smtp-source against ({t.key}) exited {proc.returncode}: {err.decode(errors='replace')[-200:]}")
            finally:
                await server.stop()
                if not settings.keep:
                    server.cleanup()
            results[t.key].append(_Round(spec.messages / elapsed, delivered, cpu, own, client))
            log(f"[smtp-source, {mode}] round {i}/{rounds} ({t.key}): {spec.messages / elapsed:.0f} msg/s"
                + (f", {delivered} delivered" if delivered is not None else ""))
    def ms_per_msg(rs: list[_Round], seconds: str) -> float:
        return statistics.median(getattr(r, seconds) * 1000 / spec.messages for r in rs)

    base = statistics.median(r.rate for r in results["a"]) if results.get("a") else None
    labels = {t.key: t.label for t in chosen}
    rows = []
    for key, rs in results.items():
        rates = [r.rate for r in rs]
        med = statistics.median(rates)
        delivered = [r.delivered for r in rs if r.delivered is not None]
        rows.append([f"({key}) {labels[key]}", fmt(med), fmt(min(rates)), fmt(max(rates)),
                     fmt(med / base * 100, 0, " %") if base else "n/a",
                     f"{sum(delivered)}/{spec.messages * len(rs)}" if delivered else "n/a",
                     fmt(ms_per_msg(rs, "cpu"), 2), fmt(ms_per_msg(rs, "own"), 2) if delivered else "n/a",
                     fmt(ms_per_msg(rs, "client"), 2)])
    c = results.get("c")
    if base and c:
        speed_verdicts(report, f"{spec.sessions} sessions × {spec.size:,} B with smtp-source, {mode}",
                       statistics.median(r.rate for r in c), base, ms_per_msg(c, "own"), ms_per_msg(c, "cpu"),
                       ms_per_msg(c, "client"))
    return [
        f"`smtp-source -s {spec.sessions} -m {spec.messages} -l {spec.size}{' -d' if keep else ''}`, {mode}, {rounds}"
        f" round(s) alternating (`--smtp-source-rounds`), each server warmed up first with {settings.warmup} messages"
        " the same way (and a hub's delivered); msg/s = messages / wall time of the smtp-source run (it"
        " does not report per-message replies); CPU includes the delivery of what was accepted.", "",
        *table(["target", "msg/s (median)", "min", "max", "vs (a)", "delivered", "server CPU ms/msg",
                "hub process CPU ms/msg", "client CPU ms/msg"], rows), ""]

