"""The speed target's verdicts for (c) under one load: its rate against bare aiosmtpd's, then the two rates that
cap it, the hub's own process and this machine's cores (the smtp comparisons and the smtp-source tables both
end with these)."""

from __future__ import annotations

import os

from .report import Report

__all__ = ["TARGET_RATIO", "speed_verdicts"]

TARGET_RATIO = 0.70
"""(c) against (a), the issue's target."""


def speed_verdicts(report: Report, load: str, rate: float, base_rate: float, hub_cpu: float | None,
                   server_cpu: float | None, client_cpu: float | None) -> None:
    """The target's verdict for (c) under one load (its rate against (a)'s), then its two ceilings: the rate the
    hub's own process caps it at (the part that does not spread over cores), and the rate this machine's cores
    cap it at, sharing them with the load generator (what no spreading can pass here)."""
    ratio = rate / base_rate
    report.verdict(f"{'MET' if ratio >= TARGET_RATIO else 'MISSED'}: full pipeline (c) at {load}, is {ratio:.0%} of"
                   f" bare aiosmtpd (a) (target ≥ {TARGET_RATIO:.0%}): {rate:.0f} vs {base_rate:.0f} msg/s.")
    if hub_cpu:
        report.verdict(f"Ceiling, {load}: (c)'s own process (the queue's, with its share of the SMTP sessions)"
                       f" used {hub_cpu:.2f} ms of CPU per message; with a core for each receive worker, that one"
                       f" core caps the hub at {1000 / hub_cpu:.0f} msg/s, {1000 / hub_cpu / base_rate:.0%} of (a) here.")
    if server_cpu and client_cpu is not None:
        cores = len(os.sched_getaffinity(0))
        most = cores * 1000 / (server_cpu + client_cpu)
        report.verdict(f"This machine's ceiling, {load}: (c) and its load generator used {server_cpu:.2f} + "
                       f"{client_cpu:.2f} ms of CPU per message, so its {cores} core(s) carry at most {most:.0f} msg/s"
                       f" of them, {most / base_rate:.0%} of (a), however evenly the hub spreads its work; (c)"
                       f" reached {rate / most:.0%} of that.")
