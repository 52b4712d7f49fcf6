"""Where the hub's time goes: (c) under load, profiled two ways, and the per-connection constructor cost.

- py-spy (when installed): samples the running hub without slowing it much; only samples where a thread
  holds the GIL are kept, so the numbers say where Python CPU time goes (the resource the hub runs out of).
- cProfile: the hub started under ``python -m cProfile``; deterministic call counts and cumulative times
  (of the main thread only; it inflates cheap calls).
- ``ReceiveProtocol()`` against a plain ``aiosmtpd.smtp.SMTP()``: aiosmtpd discovers its ``auth_*``
  methods with ``inspect.getmembers`` in every constructor, i.e. once per connection.
"""

from __future__ import annotations

import asyncio
import collections
import io
import pstats
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from . import REPO
from .loadgen import run_load
from .measure import log
from .report import Report, table
from .scenarios import Settings
from .targets import ServerProcess, Target, hub_config

__all__ = ["profile", "constructor_cost"]

TOP = 15
# Frames every sample passes through (entry point, event loop, thread start-up): left out of "inclusive" lists.
_WRAPPERS = re.compile(
    r"^(<module> \(transport/__main__\.py\)|_run_code \(<frozen runpy>\)|_run_module_as_main \(<frozen runpy>\)"
    r"|main \(transport/cli\.py\)|cmd_run \(transport/cli\.py\)|run \(asyncio/runners\.py\)"
    r"|Runner\.run \(asyncio/runners\.py\)|BaseEventLoop\.(run_until_complete|run_forever|_run_once) .*"
    r"|Handle\._run \(asyncio/events\.py\)|Thread\.(_bootstrap|_bootstrap_inner|run) \(threading\.py\)"
    r"|_worker \(concurrent/futures/thread\.py\)|_WorkItem\.run \(concurrent/futures/thread\.py\))$")
_CPROFILE_WRAPPERS = {
    ("~", "<built-in method builtins.exec>"), ("<frozen runpy>", "run_module"), ("<frozen runpy>", "_run_code"),
    ("<string>", "<module>"), ("transport/__main__.py", "<module>"), ("transport/cli.py", "main"),
    ("transport/cli.py", "cmd_run"), ("asyncio/runners.py", "run"), ("asyncio/base_events.py", "run_until_complete"),
    ("asyncio/base_events.py", "run_forever"), ("asyncio/base_events.py", "_run_once"), ("asyncio/events.py", "_run"),
    ("~", "<method 'run' of '_contextvars.Context' objects>"),
}


def _py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else None


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", str(REPO) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


# -- py-spy -------------------------------------------------------------------------------------------------
def _parse_collapsed(text: str) -> tuple[int, collections.Counter, collections.Counter, collections.Counter]:
    total = 0
    inclusive: collections.Counter = collections.Counter()
    self_: collections.Counter = collections.Counter()
    by_file: collections.Counter = collections.Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        for f in set(frames):
            if not _WRAPPERS.match(f):
                inclusive[f] += n
        self_[frames[-1]] += n
        m = re.search(r"\(([^)]*)\)\s*$", frames[-1])
        by_file[m.group(1) if m else frames[-1]] += n
    return total, inclusive, self_, by_file


def _thread_view(text: str, seconds: float, rate: int) -> list[str]:
    """Per thread: how busy it was (non-idle samples over wall time) and where, from `--threads` stacks.

    Threads of the same kind (asyncio's to_thread pool) are counted together; "busy" is then the pool's
    samples over what one core could give in the time.
    """
    own: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    tids: dict[str, set[str]] = collections.defaultdict(set)
    totals: collections.Counter = collections.Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack.startswith("thread (") or not count.isdigit():
            continue
        tid, _, rest = stack.partition(": ")
        frames = rest.split(";")
        name = re.sub(r"_\d+$", "", frames[0])
        name = "asyncio to_thread pool" if name == "asyncio" else name
        n = int(count)
        totals[name] += n
        own[name][frames[-1]] += n
        tids[name].add(tid)
    possible = max(1.0, seconds * rate)
    rows = []
    for name, n in totals.most_common():
        top = [f"{f} {c / n:.0%}" for f, c in own[name].most_common(4)]
        rows.append([name, len(tids[name]), f"{n / possible:.0%}", "; ".join(top)])
    return table(["thread", "threads", "busy (of one core)", "where (own time, share of the thread's samples)"], rows)


async def _py_spy_round(target: Target, settings: Settings, tool: str) -> list[str]:
    server = ServerProcess(target, settings.workdir / "profile-py-spy")
    await server.start()
    gil_path, threads_path = server.workdir / "py-spy-gil.txt", server.workdir / "py-spy-threads.txt"
    rate = 250
    spies: list[subprocess.Popen] = []
    errors: list[str] = []
    try:
        spec = settings.spec(host=server.host, port=server.port)
        await run_load(replace(spec, messages=settings.warmup, tag="warmup"))
        await server.wait_delivered(settings.warmup, stall=10)
        common = ["record", "--pid", str(server.pid), "--format", "raw", "--rate", str(rate), "--nolineno",
                  "--nonblocking"]
        spies = [subprocess.Popen([tool, *common, "--output", str(gil_path), "--gil"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
                 subprocess.Popen([tool, *common, "--output", str(threads_path), "--threads"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)]
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
        result = await run_load(replace(spec, tag="profile"))
        await server.wait_delivered(settings.warmup + result.accepted, stall=10)
        seconds = time.monotonic() - t0 + 0.5
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            try:
                _, err = await asyncio.to_thread(spy.communicate, timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
                err = b"timed out"
            if spy.returncode not in (0, None):
                errors.append(err.decode(errors="replace").strip()[-200:])
        await server.stop()
    if not gil_path.exists():
        if not settings.keep:
            server.cleanup()
        return [f"py-spy produced no profile ({'; '.join(errors)})."]
    total, inclusive, self_, by_file = _parse_collapsed(gil_path.read_text(errors="replace"))
    threads = _thread_view(threads_path.read_text(errors="replace"), seconds, rate) if threads_path.exists() else []
    if not settings.keep:
        server.cleanup()
    if not total:
        return ["py-spy collected no samples."]
    lines = [f"py-spy at {rate} Hz while (c) took {result.accepted:,} messages at {result.rate:.0f} msg/s and"
             f" delivered them ({seconds:.1f} s).", ""]
    if threads:
        lines += ["Threads of the hub process (samples where the thread was not idle; fsync and SQLite commits"
                  " count as busy):", ""] + threads + [""]
    lines += [f"GIL holder, top {TOP} by inclusive time (the function, or something it called, held the GIL;"
              f" {total:,} samples = 100 %):", ""]
    lines += table(["%", "function (file)"], [[f"{n / total:.1%}", f] for f, n in inclusive.most_common(TOP)])
    lines += ["", f"GIL holder, top {TOP} by own time:", ""]
    lines += table(["%", "function (file)"], [[f"{n / total:.1%}", f] for f, n in self_.most_common(TOP)])
    lines += ["", "GIL holder, own time by file:", ""]
    lines += table(["%", "file"], [[f"{n / total:.1%}", f] for f, n in by_file.most_common(TOP)])
    return lines


# -- cProfile -----------------------------------------------------------------------------------------------
def _pstats_rows(stats: pstats.Stats, key: str) -> list[list[str]]:
    entries = stats.stats  # type: ignore[attr-defined]
    ordered = sorted(entries.items(), key=lambda kv: kv[1][3] if key == "cumulative" else kv[1][2], reverse=True)
    if key == "cumulative":
        ordered = [kv for kv in ordered if (_short(kv[0][0]), kv[0][2]) not in _CPROFILE_WRAPPERS]
    rows = []
    for (file, line, func), (cc, nc, tt, ct, _) in ordered[:TOP]:
        calls = f"{nc}" if nc == cc else f"{nc}/{cc}"
        where = f"{_short(file)}:{line}" if file != "~" else "(built-in)"
        rows.append([calls, f"{tt:.3f}", f"{ct:.3f}", f"{func} ({where})"])
    return rows


async def _cprofile_round(target: Target, settings: Settings) -> list[str]:
    server = ServerProcess(target, settings.workdir / "profile-cprofile")
    prof_path = server.workdir / "hub.prof"
    await server.start(profile=["-m", "cProfile", "-o", str(prof_path)])
    try:
        spec = settings.spec(host=server.host, port=server.port)
        await run_load(replace(spec, messages=settings.warmup, tag="warmup"))
        result = await run_load(replace(spec, tag="profile"))
        await server.wait_delivered(settings.warmup + result.accepted, stall=10)
    finally:
        await server.stop()
    if not prof_path.exists():
        if not settings.keep:
            server.cleanup()
        return [f"cProfile wrote no profile ({server.stderr_tail()})."]
    stats = pstats.Stats(str(prof_path), stream=io.StringIO())
    if not settings.keep:
        server.cleanup()
    lines = [f"cProfile of the hub's main thread, whole run (start-up, {settings.warmup} warm-up and"
             f" {result.accepted:,} measured messages at {result.rate:.0f} msg/s under the profiler, shutdown)."
             " Seconds; coroutine times count each resumption.", "",
             f"Top {TOP} by cumulative time (entry point and event-loop frames left out):", ""]
    lines += table(["calls", "tottime", "cumtime", "function"], _pstats_rows(stats, "cumulative"))
    lines += ["", f"Top {TOP} by own time:", ""]
    lines += table(["calls", "tottime", "cumtime", "function"], _pstats_rows(stats, "tottime"))
    return lines


# -- the constructor ----------------------------------------------------------------------------------------
async def constructor_cost(target: Target, workdir: Path, n: int = 2000) -> list[str]:
    """Per-connection cost of building the protocol object and per-command cost of parsing a path, the hub's
    way (whatever `transport.receive` does today) against aiosmtpd's."""
    import inspect
    import types

    from aiosmtpd.smtp import SMTP

    from transport.core.config import TransportConfig
    from transport.core.pipeline import Pipeline
    from transport.receive import ReceiveProtocol

    from .bare_server import HOSTNAME, Discard

    cfg = TransportConfig.model_validate(hub_config(target, workdir / "var"))
    connector = types.SimpleNamespace(settings=cfg.receive, config=cfg, pipeline=Pipeline([]), tls=None,
                                      submission=None, sessions=set(), draining=False)
    loop = asyncio.get_running_loop()
    handler = Discard()

    def per_call(make) -> float:
        make()
        t0 = time.perf_counter()
        for _ in range(n):
            make()
        return (time.perf_counter() - t0) / n * 1e6

    rows = []
    maker = getattr(ReceiveProtocol, "template", None)
    if maker is not None:  # the hub builds one template per hub and copies it for each connection
        template = maker(connector)
        rows.append(["`ReceiveProtocol(connector, template)` (what the hub does per connection)",
                     f"{per_call(lambda: ReceiveProtocol(connector, template)):.0f}"])
    rows.append(["`ReceiveProtocol(connector)` (aiosmtpd's constructor)" if maker is not None
                 else "`ReceiveProtocol(connector)` (what the hub does per connection)",
                 f"{per_call(lambda: ReceiveProtocol(connector)):.0f}"])
    bare = SMTP(handler, hostname=HOSTNAME, loop=loop)
    rows.append(["`aiosmtpd.smtp.SMTP(handler, hostname=...)` (the bare server, per connection)",
                 f"{per_call(lambda: SMTP(handler, hostname=HOSTNAME, loop=loop)):.0f}"])
    rows.append(["  of which `inspect.getmembers(self)`", f"{per_call(lambda: inspect.getmembers(bare)):.0f}"])
    rows.append(["  of which the `dir(self)` scan for `smtp_*`",
                 f"{per_call(lambda: [m for m in dir(bare) if m.startswith('smtp_')]):.0f}"])

    proto = ReceiveProtocol(connector)
    path_rows = [["aiosmtpd `SMTP._getaddr('<bench@fabrikam.com>')` (the bare server, every MAIL and RCPT)",
                  f"{per_call(lambda: SMTP._getaddr(bare, '<bench@fabrikam.com>')):.0f}"]]
    parse = getattr(proto, "_parse_path", None)
    if parse is not None and inspect.iscoroutinefunction(parse):
        await parse("FROM:<bench@fabrikam.com>", "FROM:")
        t0 = time.perf_counter()
        for _ in range(n):
            await parse("FROM:<bench@fabrikam.com>", "FROM:")
        path_rows.insert(0, ["hub `ReceiveProtocol._parse_path('FROM:<bench@fabrikam.com>')` (every MAIL and RCPT)",
                             f"{(time.perf_counter() - t0) / n * 1e6:.0f}"])
    return [f"Building the protocol object once per connection, and parsing the path of each MAIL and RCPT"
            f" ({n:,} calls each; µs per call, measured in the bench process):", "",
            *table(["call", "µs per call"], rows + path_rows)]


async def profile(settings: Settings, report: Report, targets: dict[str, Target]) -> None:
    target = targets["c"]
    spec = settings.spec()
    log(f"profile: ({target.key}) {target.label}, {spec.sessions} sessions × {spec.size} B, {spec.messages} messages")
    lines = [f"({target.key}) {target.label} at {spec.sessions} sessions × {spec.size:,} B, {spec.messages:,} messages,"
             f" {spec.messages_per_session} message(s) per session.", ""]
    lines += ["### Per-connection and per-command costs", ""] + await constructor_cost(target, settings.workdir) + [""]
    tool = _py_spy()
    lines += ["### py-spy", ""]
    if tool is None:
        lines += ["Skipped: py-spy is not installed (`.venv/bin/pip install py-spy`).", ""]
    else:
        try:
            lines += await _py_spy_round(target, settings, tool) + [""]
        except Exception as e:  # a profiler that cannot attach (no ptrace) must not lose the rest
            lines += [f"py-spy failed: {type(e).__name__}: {e}", ""]
    lines += ["### cProfile", ""] + await _cprofile_round(target, settings)
    report.add("Profile: where the hub's time goes", lines)

