"""The relay scenario: the hub relaying to a smart host against the same traffic delivered to a mailbox.

The smart host is an aiosmtpd server in the bench process that accepts and counts. The relay target is (b),
the hub without agents, with an InternalRelay accepted domain whose mail a smart-host send connector takes
to that server; the mailbox target is (b) itself. Both get the same load (sessions, size, count), round by
round, alternating; each is timed from the first connect to the last message delivered (the last DELIVER row
for the mailbox, the last message the smart host took for the relay).
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from dataclasses import replace

from aiosmtpd.controller import Controller

from .loadgen import run_load
from .measure import log, measure_round
from .report import Report, fmt, table
from .scenarios import Settings
from .targets import ServerProcess, Target

__all__ = ["relay"]

RELAY_DOMAIN = "fabrikam-relay.test"


class _SmartHost:
    """Accepts every message; counts them and remembers when the last one came."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0

    async def handle_DATA(self, server, session, envelope) -> str:
        self.count += 1
        self.last = time.time()
        return "250 2.6.0 Queued mail for delivery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _relay_round(target: Target, settings: Settings, sink: _SmartHost, n: int, workdir) -> tuple[float, float, int]:
    """(end-to-end msg/s, accepted msg/s, relayed) for one round through the smart host."""
    server = ServerProcess(target, workdir)
    await server.start()
    try:
        spec = replace(settings.spec(recipient=f"bench@{RELAY_DOMAIN}", tag="relay", messages=n),
                       host=server.host, port=server.port)
        start = sink.count
        warm = await run_load(replace(spec, messages=settings.warmup, sessions=min(spec.sessions, 5), tag="warmup"))
        goal, warm_deadline = start + warm.accepted, time.monotonic() + 60
        while sink.count < goal and time.monotonic() < warm_deadline:  # a message stuck in retry must not hang the bench
            await asyncio.sleep(0.05)
        before = sink.count
        load = await run_load(spec)
        deadline = time.monotonic() + 60 + n * 0.05
        while sink.count - before < load.accepted and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        relayed = sink.count - before
        elapsed = max(1e-6, sink.last - load.started_wall)
        return relayed / elapsed, load.rate, relayed
    finally:
        await server.stop()
        if not settings.keep:
            server.cleanup()


async def relay(settings: Settings, report: Report, targets: dict[str, Target]) -> None:
    sink = _SmartHost()
    port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, server_hostname="smarthost.bench.test")
    controller.start()
    mailbox = targets["b"]
    relaying = replace(mailbox, key="r", label="(b) relaying to a smart host", extra={
        "accepted_domains": [{"domain": "contoso.com", "type": "Authoritative"},
                             {"domain": RELAY_DOMAIN, "type": "InternalRelay"}],
        "send_connectors": [{"name": "Bench Smart Host", "address_spaces": [RELAY_DOMAIN],
                             "smart_hosts": [f"127.0.0.1:{port}"]}]})
    n = settings.messages
    rates: dict[str, list[float]] = {"mailbox": [], "relay": []}
    accepted: dict[str, list[float]] = {"mailbox": [], "relay": []}
    counts = {"mailbox": 0, "relay": 0}
    try:
        for i in range(settings.rounds):
            r = await measure_round(mailbox, settings.spec(tag="relay-mb", messages=n),
                                    settings.workdir / f"relay-mb-{i}", warmup=settings.warmup, keep=settings.keep)
            rates["mailbox"].append(r.delivered_rate or 0.0)
            accepted["mailbox"].append(r.rate)
            counts["mailbox"] += r.delivered or 0
            e2e, acc, relayed = await _relay_round(relaying, settings, sink, n, settings.workdir / f"relay-sh-{i}")
            rates["relay"].append(e2e)
            accepted["relay"].append(acc)
            counts["relay"] += relayed
            log(f"relay round {i + 1}: mailbox {rates['mailbox'][-1]:.0f} msg/s, smart host {e2e:.0f} msg/s")
    finally:
        controller.stop()
    med = {k: statistics.median(v) if v else 0.0 for k, v in rates.items()}
    rows = [[f"({mailbox.key}) {mailbox.label}: to a mailbox (Maildir)", f"{counts['mailbox']:,}/{n * settings.rounds:,}",
             fmt(med["mailbox"]), fmt(statistics.median(accepted["mailbox"])), "100%"],
            ["(b) relaying to a smart host (aiosmtpd, same process as the load)",
             f"{counts['relay']:,}/{n * settings.rounds:,}", fmt(med["relay"]), fmt(statistics.median(accepted["relay"])),
             f"{med['relay'] / med['mailbox']:.0%}" if med["mailbox"] else "n/a"]]
    report.add("Relay: a smart host against mailboxes", [
        f"{settings.rounds} round(s) each, alternating, {n:,} messages of {settings.size:,} B over {settings.sessions}"
        f" sessions; end to end = first connect to the last message delivered (mailbox: last DELIVER row; relay:"
        f" last message the smart host took). The relay goes through an InternalRelay domain and a smart-host send"
        f" connector.", "",
        *table(["traffic", "delivered", "end-to-end msg/s (median)", "accepted msg/s", "vs mailbox"], rows)])
    report.closing.append(f"Relay to a smart host: {med['relay']:.0f} msg/s end to end against {med['mailbox']:.0f}"
                          f" msg/s to a mailbox ({settings.sessions} sessions × {settings.size:,} B).")
