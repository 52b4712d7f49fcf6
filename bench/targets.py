"""The servers under test: what each target is, how its subprocess is started and stopped, what it cost.

Each round starts a fresh server in its own subprocess with its own data root, so rounds do not share
state (queue database, Maildir, tracking log). While it runs, `/proc/<pid>/status` and `/proc/<pid>/stat`
of its process and its children (a hub's receive worker processes) give its memory (VmRSS, VmHWM = peak RSS)
and CPU time.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import ipaddress
import os
import pkgutil
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from . import REPO

__all__ = ["Target", "ServerProcess", "discover_agents", "spf_pass_sender", "hub_config", "tracking_times", "TrackingTimes", "backlog_at",
           "HUB_FQDN", "RECIPIENT", "pickup_supported", "memory_folder",
           "remove_at_end", "remove_left_on_disk"]

HUB_FQDN = "hub.bench.test"
RECIPIENT = "alice@contoso.com"
READY = re.compile(r"ready: SMTP on \[?([0-9a-fA-F.:]+?)\]?:(\d+)")
DASHBOARD_URL = re.compile(r"dashboard on (http://\S+/);")
DASHBOARD_REFRESH = 2.0
ZONE_FILE = REPO / "examples" / "zones" / "demo.zone"
EXAMPLE_AGENT = {"class": "examples.recipient_block:RecipientBlockAgent", "priority": 10,
                 "config": {"blocked": ["blocked@contoso.com"]}}
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    key: str  # a, b, c, d, ...
    label: str
    kind: str  # "bare" or "hub"
    agents: list[dict[str, Any]] = field(default_factory=list)
    durable: bool = True
    uvloop: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # settings added to (or replacing those of) the config
    dashboard: bool = False  # serve the dashboard and fetch its refreshing pages as an open browser does
    checkout: Path | None = None  # run the hub of this other checkout of the project (`--baseline`)
    in_memory: bool = False  # the data root on a memory file system (`memory_folder`), not under the work folder

    @property
    def is_hub(self) -> bool:
        return self.kind == "hub"


# -- agents -------------------------------------------------------------------------------------------------
def discover_agents() -> tuple[list[str], list[str]]:
    """Built-in agents: `module:Class` for each agent class defined in a module under `agents/`.

    Returns (specs, notes): the agent classes found, and one sentence per module or class left out and why
    (a module that does not import yet, an agent that cannot run without configuration).
    """
    from transport.core.agent import Agent, RoutingAgent, SmtpReceiveAgent

    import agents

    specs: list[str] = []
    notes: list[str] = []

    def onerror(name: str) -> None:
        notes.append(f"{name}: not importable ({sys.exc_info()[1]})")

    for info in pkgutil.walk_packages(agents.__path__, "agents.", onerror=onerror):
        try:
            module = importlib.import_module(info.name)
        except Exception as e:  # a module someone is still writing must not break the benchmark
            notes.append(f"{info.name}: not importable ({type(e).__name__}: {e})")
            continue
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (not issubclass(obj, (SmtpReceiveAgent, RoutingAgent)) or obj in (Agent, SmtpReceiveAgent, RoutingAgent)
                    or obj.__module__ != module.__name__ or inspect.isabstract(obj) or not obj.hooks()):
                continue
            spec = f"{module.__name__}:{obj.__qualname__}"
            try:
                obj.Config.model_validate({})
            except Exception as e:
                notes.append(f"{spec}: left out, it needs configuration ({str(e).splitlines()[0]})")
                continue
            specs.append(spec)
    return sorted(set(specs)), notes


def spf_pass_sender() -> tuple[str, str]:
    """A MAIL FROM whose domain's SPF record passes for 127.0.0.1 in the demo zone file, and how it was chosen."""
    fallback = "bench@fabrikam.com"
    if not ZONE_FILE.exists():
        return fallback, f"{ZONE_FILE.relative_to(REPO)} does not exist yet; MAIL FROM {fallback}"
    try:
        import dns.zone

        zone = dns.zone.from_file(str(ZONE_FILE), relativize=False, check_origin=False)
    except Exception as e:
        return fallback, f"{ZONE_FILE.relative_to(REPO)} unreadable ({e}); MAIL FROM {fallback}"
    loopback = ipaddress.ip_address("127.0.0.1")
    candidates = []
    for name, node in zone.nodes.items():
        for rdataset in node.rdatasets:
            if rdataset.rdtype != 16:  # TXT
                continue
            for rdata in rdataset:
                text = b"".join(rdata.strings).decode("ascii", "replace")
                if not text.lower().startswith("v=spf1"):
                    continue
                for term in text.split()[1:]:
                    mech = term.lstrip("+").lower()
                    if mech.startswith("ip4:"):
                        try:
                            if loopback in ipaddress.ip_network(mech[4:], strict=False):
                                candidates.append(str(name).rstrip(".").lower())
                        except ValueError:
                            pass
    if not candidates:
        return fallback, f"no SPF record in {ZONE_FILE.name} passes 127.0.0.1; MAIL FROM {fallback}"
    preferred = [d for d in ("fabrikam.com", "contoso.com") if d in candidates]
    domain = (preferred or sorted(candidates))[0]
    return f"bench@{domain}", f"{domain}'s SPF record in {ZONE_FILE.name} passes 127.0.0.1"


def pickup_supported() -> str | None:
    """None when the hub has a pickup watcher configured by a `pickup` section; else why not."""
    from transport.core.config import TransportConfig

    if "pickup" not in TransportConfig.model_fields:
        return "the hub configuration has no `pickup` section yet (pickup/ is being built)"
    pkg = REPO / "pickup"
    if not any(p.name != "__init__.py" for p in pkg.glob("*.py")):
        return "pickup/ has no watcher module yet"
    return None


# -- configuration -------------------------------------------------------------------------------------------
def hub_config(target: Target, data_root: Path, pickup: bool = False) -> dict[str, Any]:
    from transport.core.config import TransportConfig

    cfg: dict[str, Any] = {
        "organization": {"name": "Contoso"},
        "data_root": str(data_root),
        "accepted_domains": [{"domain": "contoso.com", "type": "Authoritative"}],
        "mailboxes": [{"address": RECIPIENT, "display_name": "Alice Wilson"}],
        "receive": {"name": "Bench Frontend", "bindings": ["127.0.0.1:0"], "fqdn": HUB_FQDN,
                    "max_message_size": "64MB", "tls": {"enabled": False}},
        "queue": {"durable": target.durable},
        "dns": {"use_network": False, "zone_files": [str(ZONE_FILE)] if ZONE_FILE.exists() else []},
        "agents": target.agents,
        **target.extra,
    }
    if target.dashboard:
        cfg["dashboard"] = {"enabled": True, "binding": "127.0.0.1:0", "refresh_interval": DASHBOARD_REFRESH}
    if pickup and "pickup" in TransportConfig.model_fields:
        section: dict[str, Any] = {}
        model = TransportConfig.model_fields["pickup"].annotation
        fields = getattr(model, "model_fields", {})
        if "enabled" in fields:
            section["enabled"] = True
        for name in ("directory", "path", "pickup_directory_path", "folder"):
            if name in fields:
                section[name] = str(data_root / "pickup")
                break
        if "max_messages_per_minute" in fields:
            section["max_messages_per_minute"] = 0  # Exchange's 100/min would measure the throttle, not the hub
        cfg["pickup"] = section
    return cfg


# -- the server process ---------------------------------------------------------------------------------------
def _proc_status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])  # kB
    except OSError:
        pass
    return out


def _proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0.0


def memory_folder() -> Path | None:
    """A folder on a memory file system (tmpfs) this user may write to, or None: /dev/shm on Linux."""
    try:
        with open("/proc/mounts") as f:
            mounts = {fields[1]: fields[2] for fields in (line.split() for line in f) if len(fields) > 2}
    except OSError:
        return None
    shm = Path("/dev/shm")
    return shm if mounts.get(str(shm)) == "tmpfs" and os.access(shm, os.W_OK) else None


class ServerError(RuntimeError):
    pass


class ServerProcess:
    """One server under test, started in a subprocess and stopped with SIGTERM."""

    def __init__(self, target: Target, workdir: Path) -> None:
        self.target = target
        self.workdir = workdir
        self.data_root = workdir / "var"
        if target.in_memory:
            memory = memory_folder()
            if memory is None:
                raise ServerError(f"{target.label}: no memory file system (tmpfs at /dev/shm) to put the data root on")
            self.data_root = Path(tempfile.mkdtemp(prefix=f"bench-{workdir.name}-", dir=memory)) / "var"
        self.proc: subprocess.Popen | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.watcher: subprocess.Popen | None = None
        self.stdout_path = workdir / "server.out"
        self.stderr_path = workdir / "server.err"

    def command(self, config_path: Path, profile: list[str] | None) -> list[str]:
        if self.target.kind == "bare":
            args = ["-m", "bench.bare_server"]
        else:  # every hub target names its event loop: (c) stays on asyncio's when uvloop is installed
            args = ["-m", "transport", "run", "-c", str(config_path), "--log-level", "WARNING",
                    "--event-loop", "uvloop" if self.target.uvloop else "asyncio"]
        return [sys.executable, *(profile or []), *args]

    async def start(self, pickup: bool = False, profile: list[str] | None = None, timeout: float = 60) -> "ServerProcess":
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "transport.yaml"
        if self.target.is_hub:
            config_path.write_text(yaml.safe_dump(hub_config(self.target, self.data_root, pickup), sort_keys=False))
        root = self.target.checkout or REPO
        env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   PYTHONUNBUFFERED="1")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.command(config_path, profile), cwd=root, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = READY.search(self.stdout_path.read_text(errors="replace"))
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                self._watch_dashboard()
                return self
            if self.proc.poll() is not None:
                raise ServerError(f"{self.target.label} exited with status {self.proc.returncode}: {self.stderr_tail()}")
            await asyncio.sleep(0.02)
        await self.stop()
        raise ServerError(f"{self.target.label} did not print its ready line within {timeout:g}s: {self.stderr_tail()}")

    def _watch_dashboard(self) -> None:
        url = DASHBOARD_URL.search(self.stdout_path.read_text(errors="replace")) if self.target.dashboard else None
        if url:
            self.watcher = subprocess.Popen([sys.executable, "-m", "bench.dashboard_watch", url.group(1),
                                             str(DASHBOARD_REFRESH)], cwd=REPO, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stderr_tail(self, lines: int = 5) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def processes(self) -> list[int]:
        """The server's pid and those of its children (a hub's receive worker processes)."""
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/children") as f:
                return [self.pid, *(int(p) for p in f.read().split())]
        except OSError:
            return [self.pid]

    def memory_kb(self) -> dict[str, int]:
        """VmRSS and VmHWM summed over the server's processes (the sum of peaks: an upper bound of the peak)."""
        total: dict[str, int] = {}
        for pid in self.processes():
            for key, value in _proc_status(pid).items():
                total[key] = total.get(key, 0) + value
        return total

    def cpu_seconds(self) -> float:
        return sum(_proc_cpu(pid) for pid in self.processes())

    def own_cpu_seconds(self) -> float:
        return _proc_cpu(self.pid)

    def delivered(self) -> int:
        """Messages in Alice's Maildir (Inbox and Junk `new/`)."""
        base = self.data_root / "mailboxes" / RECIPIENT
        n = 0
        for folder in (base / "new", base / ".Junk" / "new"):
            try:
                with os.scandir(folder) as it:
                    n += sum(1 for _ in it)
            except FileNotFoundError:
                pass
        return n

    async def wait_delivered(self, expected: int, stall: float = 20.0, poll: float = 0.1,
                             deadline: float | None = None) -> int:
        """Wait until `expected` messages are in the Maildir, nothing new arrived for `stall` seconds, or
        `deadline` seconds passed (default: 60 s plus 50 ms per message expected)."""
        last, last_change = -1, time.monotonic()
        give_up = time.monotonic() + (deadline if deadline is not None else 60 + expected * 0.05)
        while True:
            n = self.delivered()
            if n >= expected:
                return n
            if n != last:
                last, last_change = n, time.monotonic()
            elif time.monotonic() - last_change > stall:
                return n
            if time.monotonic() > give_up:
                return n
            if self.proc is not None and self.proc.poll() is not None:
                return n
            await asyncio.sleep(poll if expected - n < 5000 else 0.5)

    async def stop(self, timeout: float = 60) -> int | None:
        if self.watcher is not None:
            self.watcher.kill()
            self.watcher.wait()
            self.watcher = None
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode

    def cleanup(self) -> None:
        """Remove this round's data: a data root in memory now, what is on disk at the end of the run."""
        if self.target.in_memory:
            shutil.rmtree(self.data_root.parent, ignore_errors=True)
        remove_at_end(self.workdir)


_ON_DISK: list[Path] = []


def remove_at_end(folder: Path) -> None:
    """Leave `folder` until `remove_left_on_disk()`. Deleting a round's thousands of files just before the next
    round would charge that round for them: ext4 without a journal (this machine's disk) skips recently freed
    inodes one by one when it creates a file, which made each file the next hub created cost 3–4× the CPU
    (0.6 against 0.17 ms of the kernel's per fsynced 4 KB file, `bench/README.md`)."""
    _ON_DISK.append(folder)


def remove_left_on_disk() -> None:
    """Delete what the rounds left on disk, once nothing more is measured."""
    while _ON_DISK:
        shutil.rmtree(_ON_DISK.pop(), ignore_errors=True)


# -- the tracking log -----------------------------------------------------------------------------------------
def _ts(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


@dataclass
class TrackingTimes:
    """From the tracking log, for the messages of one run: per-message delays (ms) and the last delivery."""

    total_ms: list[float] = field(default_factory=list)  # RECEIVE -> DELIVER
    queued_ms: list[float] = field(default_factory=list)  # RECEIVE -> SUBMIT (waiting for the categorizer)
    delivery_ms: list[float] = field(default_factory=list)  # SUBMIT -> DELIVER (categorize, route, write Maildir)
    last_deliver: float | None = None  # wall-clock time of the last DELIVER row
    last_receive: float | None = None  # wall-clock time of the last RECEIVE row
    received: int = 0
    delivered: int = 0


def tracking_times(data_root: Path, tag: str) -> TrackingTimes:
    """RECEIVE, SUBMIT and DELIVER rows of the messages whose subject starts with `bench <tag> `."""
    from transport.core.tracking import read_tracking_log

    prefix = f"bench {tag} "
    rows: dict[str, dict[str, float]] = {"RECEIVE": {}, "SUBMIT": {}, "DELIVER": {}}
    for row in read_tracking_log(data_root / "logs" / "MessageTracking"):
        event = row.get("event-id", "")
        if event in rows and row.get("message-subject", "").startswith(prefix):
            rows[event].setdefault(row.get("internal-message-id", ""), _ts(row["date-time"]))
    received, submitted, delivered = rows["RECEIVE"], rows["SUBMIT"], rows["DELIVER"]
    out = TrackingTimes(delivered=len(delivered), last_deliver=max(delivered.values()) if delivered else None,
                        received=len(received), last_receive=max(received.values()) if received else None)
    for mid, t in delivered.items():
        if mid in received:
            out.total_ms.append((t - received[mid]) * 1000)
        if mid in submitted:
            out.delivery_ms.append((t - submitted[mid]) * 1000)
    out.queued_ms = [(submitted[m] - received[m]) * 1000 for m in submitted if m in received]
    return out


def backlog_at(data_root: Path, when: float) -> tuple[int, int, int]:
    """(received, waiting for the categorizer, waiting for delivery) at wall-clock time `when`, from the
    tracking log's RECEIVE, SUBMIT and DELIVER rows (all messages, warm-up included)."""
    from transport.core.tracking import read_tracking_log

    counts = {"RECEIVE": 0, "SUBMIT": 0, "DELIVER": 0}
    for row in read_tracking_log(data_root / "logs" / "MessageTracking"):
        event = row.get("event-id", "")
        if event in counts and _ts(row["date-time"]) <= when:
            counts[event] += 1
    return counts["RECEIVE"], counts["RECEIVE"] - counts["SUBMIT"], counts["SUBMIT"] - counts["DELIVER"]
