"""`make bench`: how fast the hub is on the machine at hand, relative to the fastest thing it could be.

Every server under test runs in its own subprocess; the load generator (a minimal SMTP client on asyncio
streams, `bench.loadgen`) runs in this process. Targets are measured in the same run, alternating round by
round so that drift hits all of them equally:

  (a) a bare aiosmtpd server that accepts and discards (`bench.bare_server`) - the baseline;
  (b) the hub with no agents (durable queue, Maildir delivery);
  (c) the hub with every built-in agent (discovered under `agents/`) and the example agent, durable queue,
      Maildir delivery, on asyncio's event loop (`transport run --event-loop asyncio`);
  (d) (c) on uvloop (`--event-loop uvloop`, the `speed` extra), when uvloop is installed.

Scenarios: ``smtp`` (the comparison above, with a new connection per message and with reused sessions, then
(c) paced at half the rate it reached, for its latencies), ``scaling`` (1/10/50 sessions, 4 KB/100 KB/5 MB,
session reuse), ``memory`` (RSS over a 100,000-message run), ``pickup`` (10,000 files dropped at once vs SMTP;
skipped until the hub has a pickup watcher), ``spf`` (runs ``bench/spf_bench.py`` when it exists), ``profile``
(where the hub's time goes: py-spy when installed, and cProfile). ``python -m bench --help`` lists the options.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
