"""`python -m bench`: options, the order scenarios run in, the results file.

    python -m bench                       # default: smtp comparison (both session modes, then paced) + scaling +
                                          #   large + pickup + relay + spf (a few minutes)
    python -m bench --scenario memory     # 100,000 messages through (c), RSS at start / middle / end
    python -m bench --scenario large      # 10 × 30 MB at once: peak memory of (c) against (a)
    python -m bench --scenario all        # everything, memory included, plus the profile
    python -m bench --quick --scenario smtp   # tiny counts: checks the bench works (the test runs this)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from . import BENCH_DIR
from .disk import settle
from .measure import Summary, log
from .report import Report
from .scenarios import Settings, build_targets
from .smtp_source import smtp_source
from .targets import remove_left_on_disk

SCENARIOS = ("smtp", "scaling", "memory", "large", "pickup", "relay", "spf", "profile")
DEFAULT = ("smtp", "scaling", "large", "pickup", "relay", "spf")
ALL = SCENARIOS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="How fast the hub is on this machine, relative to a bare aiosmtpd server that accepts and"
                    " discards.",
        epilog=f"Scenarios: {', '.join(SCENARIOS)}; 'default' = {'+'.join(DEFAULT)} (the profile is added when"
               " the (c)-vs-(a) target is missed); 'all' = every scenario. Results go to stdout and to"
               " bench/results/<date>.md.")
    p.add_argument("--scenario", default="default",
                   help="comma-separated: smtp, scaling, memory, large, pickup, relay, spf, profile, default, all."
                        " smtp = the comparison with a new connection per message, again with reused sessions,"
                        " then (c) paced at half the rate it reached (latency p50/p99 against 50 / 100 ms)")
    p.add_argument("--quick", action="store_true", help="tiny counts and one round: checks that the bench works")
    p.add_argument("--rounds", type=int, help="rounds per target in the smtp scenario (default 3; quick 1)")
    p.add_argument("--sessions", type=int, default=10, help="concurrent SMTP sessions (default 10)")
    p.add_argument("--messages", type=int, help="messages per round (default 2000; quick 60)")
    p.add_argument("--size", type=int, default=4096, help="message size in bytes (default 4096)")
    p.add_argument("--messages-per-session", type=int,
                   help="transactions per connection before QUIT, for every scenario; given, the smtp comparison"
                        " runs in this mode only (default 1, a new connection per message, and the smtp comparison"
                        " runs again with --reuse)")
    p.add_argument("--reuse", type=int, default=20,
                   help="messages per connection in the smtp comparison's second mode, reused sessions, run with"
                        " one round fewer than --rounds (default 20; 0 leaves the mode out)")
    p.add_argument("--targets", default="a,b,c,s,d,m",
                   help="targets to compare: a (bare aiosmtpd), b (hub, no agents), c (hub, all agents, one receive"
                        " process per core, the hub's among them), s (c in one process), d (c on uvloop), m (c with its data root"
                        " in memory, tmpfs), n (hub, no agents, queue not durable), w (c with the dashboard open);"
                        " default a,b,c,s,d,m")
    p.add_argument("--scaling-messages", type=int, help="messages per 4 KB scaling point (default 1000; quick 30)")
    p.add_argument("--scaling-rounds", type=int, default=1, help="rounds per scaling point (default 1)")
    p.add_argument("--memory-messages", type=int,
                   help="messages in the memory run (default 100,000 with --scenario memory/all; quick 500)")
    p.add_argument("--pickup-messages", type=int, help="files in the pickup scenario (default 10,000; quick 100)")
    p.add_argument("--baseline", type=_checkout, metavar="CHECKOUT",
                   help="another checkout of the project (an earlier commit: `git worktree add /tmp/before REV`);"
                        " its (c) runs as target (p) in the same rounds, the before of a change beside its after")
    p.add_argument("--no-profile", action="store_true", help="do not add the profile when a target is missed")
    p.add_argument("--no-smtp-source", action="store_true", help="do not use Postfix's smtp-source even if installed")
    p.add_argument("--smtp-source", metavar="PATH", help="Postfix's smtp-source to use (default: found on PATH)")
    p.add_argument("--smtp-source-rounds", type=int, default=1, help="rounds per target with smtp-source (default 1)")
    p.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results",
                   help="where the markdown results go (default bench/results)")
    p.add_argument("--no-results-file", action="store_true", help="print the tables only")
    p.add_argument("--workdir", type=Path, help="where servers keep their data (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep each server's data root, config and logs")
    p.add_argument("--settle", type=float, metavar="SECONDS",
                   help="before the first round, wait up to this long for the work folder's disk to finish freeing"
                        " the inodes of files deleted before the run (it makes creating a file, which every hub"
                        " does per message, cost many times more for minutes; default 300, quick 0; 0: no wait)")
    return p


def _scenarios(value: str) -> list[str]:
    chosen: list[str] = []
    for word in (w.strip().lower() for w in value.split(",") if w.strip()):
        if word == "default":
            chosen += DEFAULT
        elif word == "all":
            chosen += ALL
        elif word in SCENARIOS:
            chosen.append(word)
        else:
            raise SystemExit(f"unknown scenario {word!r} (choose from {', '.join(SCENARIOS)}, default, all)")
    return list(dict.fromkeys(chosen))


def _ratios(sums: dict[str, Summary]) -> str:
    """Each target's median rate over (a)'s, for the closing line; empty without (a)."""
    base = sums.get("a")
    if not base or not base.median:
        return ""
    return ", ".join(f"({k}) {s.median / base.median:.0%}" for k, s in sums.items() if k != "a")


def _checkout(value: str) -> Path:
    path = Path(value).resolve()
    if not (path / "transport" / "__main__.py").is_file():
        raise argparse.ArgumentTypeError(f"{value} is not a checkout of this project (no transport/__main__.py)")
    return path


async def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from . import profile as profiling
    from . import scenarios

    chosen = _scenarios(args.scenario)
    quick = args.quick
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-"))
    targets_wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
    bad = [t for t in targets_wanted if t not in "abcdmnsw" + ("p" if args.baseline else "")]
    if bad:
        raise SystemExit(f"unknown target(s) {', '.join(bad)} (choose from a, b, c, d, n, s, w; p with --baseline)")
    if args.baseline and "p" not in targets_wanted:
        targets_wanted.append("p")
    settings = Settings(
        quick=quick,
        rounds=args.rounds or (1 if quick else 3),
        sessions=args.sessions,
        messages=args.messages or (60 if quick else 2000),
        size=args.size,
        messages_per_session=args.messages_per_session or 1,
        reuse=0 if args.messages_per_session else args.reuse,
        targets=targets_wanted,
        workdir=workdir,
        keep=args.keep,
        scaling_messages=args.scaling_messages or (30 if quick else 1000),
        scaling_rounds=args.scaling_rounds,
        memory_messages=args.memory_messages or (500 if quick else 100_000),
        pickup_messages=args.pickup_messages or (100 if quick else 10_000),
        use_smtp_source=not args.no_smtp_source,
        smtp_source_path=args.smtp_source,
        smtp_source_rounds=args.smtp_source_rounds,
        baseline=args.baseline,
    )
    settings.settling = await settle(workdir, args.settle if args.settle is not None else (0 if quick else 300))
    report = Report(argv, quick, args.smtp_source if not args.no_smtp_source else None)
    print("\n".join(report.header()) + "\n", flush=True)
    targets = build_targets(settings, report)
    try:
        runs = []
        if "smtp" in chosen:
            runs = await scenarios.smtp(settings, report, targets)
            await smtp_source(settings, report, targets)
        if "scaling" in chosen:
            await scenarios.scaling(settings, report, targets)
        if "memory" in chosen:
            await scenarios.memory(settings, report, targets)
        if "large" in chosen:
            await scenarios.large(settings, report, targets)
        if "pickup" in chosen:
            await scenarios.pickup(settings, report, targets)
        if "relay" in chosen:
            from .relay import relay
            await relay(settings, report, targets)
        if "spf" in chosen:
            await scenarios.spf(settings, report)
        speed_missed = any(v.startswith("MISSED: full pipeline") for v in report.verdicts)
        if "profile" in chosen or (speed_missed and not args.no_profile and not quick):
            await profiling.profile(settings, report, targets)
        if speed_missed:
            report.closing.append("The (c)-vs-(a) target was missed: the profile section says where the time goes"
                                  + ("" if "profile" in chosen or not (args.no_profile or quick)
                                     else " (run `--scenario profile`)") + ".")
        if any(v.startswith("MISSED: memory") for v in report.verdicts):
            report.closing.append("Memory was not flat: the backlog line of the memory section says what is held.")
        if any(v.startswith("MISSED: pickup") for v in report.verdicts):
            report.closing.append("Pickup was slower than SMTP: compare the server CPU per message of both rows.")
        ratios = "; ".join(f"{_ratios(sums)} ({mode.label})" for mode, sums in runs if _ratios(sums))
        if ratios:
            report.closing.append(f"Ratios to bare aiosmtpd (a), {settings.sessions} sessions × {settings.size:,} B:"
                                  f" {ratios}. Produced by `{report.command}`.")
    finally:
        if args.keep:
            log(f"server data kept under {workdir}")
        else:
            remove_left_on_disk()
            if args.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
    report.print_closing()
    if not args.no_results_file:
        name = dt.date.today().isoformat()
        if set(chosen) != set(DEFAULT) and set(chosen) != set(ALL):
            name += "-" + "-".join(chosen)
        if quick:
            name += "-quick"
        path = report.write(args.results_dir, name + ".md")
        log(f"results written to {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(run(args, argv))
    except KeyboardInterrupt:
        return 130
