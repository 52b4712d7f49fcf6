"""The smtp scenario's second load generator: Postfix's `smtp-source` (C, no per-message replies) against every
chosen target, rounds alternating, when it is installed or named with `--smtp-source PATH`."""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import time

from .measure import log
from .report import Report, fmt, table
from .scenarios import Settings
from .targets import RECIPIENT, ServerProcess, Target

__all__ = ["smtp_source"]


async def smtp_source(settings: Settings, report: Report, targets: dict[str, Target]) -> None:
    tool = settings.smtp_source_path or shutil.which("smtp-source") or next(
        (p for p in ("/usr/sbin/smtp-source", "/usr/bin/smtp-source") if os.path.exists(p)), None)
    if not settings.use_smtp_source:
        return
    if tool is None:
        report.add("SMTP load with Postfix's smtp-source", [
            "Skipped: `smtp-source` is not installed (Debian/Ubuntu: `apt-get install postfix`, or unpack the"
            " package and pass `--smtp-source PATH`)."])
        return
    chosen = [targets[k] for k in settings.targets]
    spec = settings.spec()
    results: dict[str, list[tuple[float, int | None, float]]] = {t.key: [] for t in chosen}
    rounds = settings.smtp_source_rounds
    for i in range(1, rounds + 1):
        for t in chosen:
            server = ServerProcess(t, settings.workdir / f"smtp-source-{t.key}-r{i}")
            await server.start()
            try:
                cmd = [tool, "-s", str(spec.sessions), "-m", str(spec.messages), "-l", str(spec.size),
                       "-f", spec.sender, "-t", RECIPIENT, "-M", "loadgen.bench.test"]
                if spec.messages_per_session > 1:
                    cmd.append("-d")  # keep the connection for the next message
                cmd.append(f"{server.host}:{server.port}")
                cpu0 = server.cpu_seconds()
                t0 = time.monotonic()
                proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.DEVNULL,
                                                            stderr=asyncio.subprocess.PIPE)
                _, err = await proc.communicate()
                elapsed = time.monotonic() - t0
                delivered = None
                if t.is_hub:
                    delivered = await server.wait_delivered(spec.messages)
                cpu = server.cpu_seconds() - cpu0
                if proc.returncode != 0:
                    log(f"smtp-source against ({t.key}) exited {proc.returncode}: {err.decode(errors='replace')[-200:]}")
            finally:
                await server.stop()
                if not settings.keep:
                    server.cleanup()
            results[t.key].append((spec.messages / elapsed, delivered, cpu))
            log(f"[smtp-source] round {i}/{rounds} ({t.key}): {spec.messages / elapsed:.0f} msg/s"
                + (f", {delivered} delivered" if delivered is not None else ""))
    base = statistics.median(r[0] for r in results["a"]) if results.get("a") else None
    rows = []
    for key, rs in results.items():
        rates = [r[0] for r in rs]
        med = statistics.median(rates)
        delivered = [r[1] for r in rs if r[1] is not None]
        rows.append([f"({key}) {targets[key].label}", fmt(med), fmt(min(rates)), fmt(max(rates)),
                     fmt(med / base * 100, 0, " %") if base else "n/a",
                     f"{sum(delivered)}/{spec.messages * len(rs)}" if delivered else "n/a",
                     fmt(statistics.median(r[2] * 1000 / spec.messages for r in rs), 2)])
    report.add("SMTP load with Postfix's smtp-source", [
        f"`smtp-source -s {spec.sessions} -m {spec.messages} -l {spec.size}"
        f"{' -d' if spec.messages_per_session > 1 else ''}`, {rounds} round(s) alternating (`--smtp-source-rounds`);"
        " msg/s = messages / wall time of the smtp-source run (it does not report per-message replies).", "",
        *table(["target", "msg/s (median)", "min", "max", "vs (a)", "delivered", "server CPU ms/msg"], rows)])
