"""Shared helpers for the hub tests: configurations, in-process and subprocess hubs, SMTP clients, test agents.

Everything here drives the hub from the outside (sockets, files, the tracking log) so that the tests assert on
what a mail administrator or an SMTP client would observe.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable

import yaml

from agents import AgentConfig, EndOfDataEvent, RoutingAgent, SmtpReceiveAgent, SmtpResponse, SubmittedEvent
from transport.core.config import load_config
from transport.hub import Hub
from transport.core.tracking import read_tracking_log

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
TRANSPORT_BIN = REPO / ".venv" / "bin" / "transport"
PASSWORD = "Passw0rd!"

# -- configuration ---------------------------------------------------------------------------------------


def base_config(data_root: Path) -> dict[str, Any]:
    """A small Contoso on an ephemeral port, offline, without TLS."""
    return {
        "organization": {"name": "Contoso", "scl_junk_threshold": 4},
        "data_root": str(data_root),
        "accepted_domains": [{"domain": "contoso.com", "type": "Authoritative"}],
        "mailboxes": [
            {"address": "alice@contoso.com", "display_name": "Alice Wilson", "password": PASSWORD},
            {"address": "bob@contoso.com", "display_name": "Bob Kelly", "password": PASSWORD},
            {"address": "carol@contoso.com", "display_name": "Carol", "scl_junk_threshold": 8},
        ],
        "receive": {"bindings": ["127.0.0.1:0"], "fqdn": "hub.contoso.com", "tls": {"enabled": False},
                    "auth_tarpit_interval": 0},
        "dns": {"use_network": False},
        "queue": {"durable": False},
        "agents": [],
        "workers": 0,  # SMTP receive in the hub's process: tests reach into it (agents, clocks, resolvers)
    }


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge mappings (lists and scalars in `extra` replace)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def write_config(tmp_path: Path, extra: dict[str, Any] | None = None, name: str = "transport.yaml") -> Path:
    data = merge(base_config(tmp_path / "data"), extra or {})
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def agent(cls: str, priority: int = 100, on_error: str = "fail_open", **config: Any) -> dict[str, Any]:
    return {"class": cls, "priority": priority, "on_error": on_error, "config": config}


class FakeClock:
    """A clock for `Hub(clock=...)` that stands still until the test moves it (`advance`, `set`): the hub's
    retries, expiry, delay notices, log files and counters' saves then happen at exactly the times asserted,
    without waiting for them. It starts at a whole second of the real time, so files the hub writes have
    modification times near it."""

    def __init__(self, start: float | None = None) -> None:
        self.now = float(int(time.time())) if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    def set(self, when: float) -> None:
        self.now = when


@contextlib.asynccontextmanager
async def running_hub(tmp_path: Path, extra: dict[str, Any] | None = None,
                      before_start: Callable[[Hub], None] | None = None,
                      clock: Callable[[], float] = time.time) -> AsyncIterator[Hub]:
    """An in-process hub on an ephemeral port, stopped (quickly) on exit; `clock` is the hub's (a FakeClock for
    time-driven behaviour)."""
    hub = Hub(load_config(write_config(tmp_path, extra)), clock=clock)
    if before_start is not None:
        before_start(hub)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop(grace=1.0)


# -- observing the hub -------------------------------------------------------------------------------------


def maildir(hub_or_root: Any, address: str, folder: str = "") -> Path:
    root = hub_or_root.config.data_root if isinstance(hub_or_root, Hub) else Path(hub_or_root)
    base = root / "mailboxes" / address
    return base / folder if folder else base


def messages(hub_or_root: Any, address: str, folder: str = "") -> list[bytes]:
    """Raw contents of the messages in a Maildir folder's new/ (Inbox unless folder=".Junk")."""
    new = maildir(hub_or_root, address, folder) / "new"
    if not new.is_dir():
        return []
    return [p.read_bytes() for p in sorted(new.iterdir())]


def tracking(hub_or_root: Any) -> list[dict[str, str]]:
    if isinstance(hub_or_root, Hub):
        root = hub_or_root.config.data_root
    else:
        root = Path(hub_or_root)
    return list(read_tracking_log(root / "logs" / "MessageTracking"))


def events_for(rows: Iterable[dict[str, str]], message_id: str) -> list[str]:
    return [r["event-id"] for r in rows if r["message-id"] == message_id]


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll until predicate() is truthy; return its value (fail the test on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {getattr(predicate, '__name__', predicate)}")
        await asyncio.sleep(interval)


async def scheduler_ticks(hub: Hub, count: int = 2) -> None:
    """Wait until the queue scheduler has looked at the queues `count` more times (for "nothing else happens")."""
    goal = hub.scheduler.ticks + count
    await wait_for(lambda: hub.scheduler.ticks >= goal, timeout=10)


async def housekeeping_rounds(hub: Hub, count: int = 2) -> None:
    """Wait until the hub's housekeeping (free disk, the counters' saves) has gone round `count` more times."""
    goal = hub.housekeeping_rounds + count
    await wait_for(lambda: hub.housekeeping_rounds >= goal, timeout=10)


async def directory_scans(hub: Hub, count: int = 2) -> None:
    """Wait until every watched directory (Pickup, Replay, the Outboxes) has been scanned `count` more times."""
    goals = [(w, w.scans + count) for w in hub.watchers + hub.outboxes]
    await wait_for(lambda: all(w.scans >= goal for w, goal in goals), timeout=10)


def drop_file(directory: Path, name: str, content: bytes) -> None:
    """What a careful writer puts in a Pickup or Replay directory: write aside, rename in."""
    directory.mkdir(parents=True, exist_ok=True)
    part = directory / f".{name}.part"
    part.write_bytes(content)
    os.rename(part, directory / name)


def header_value(raw: bytes, name: str) -> str | None:
    from transport.core.headers import parse_headers

    for h in parse_headers(raw):
        if h.key == name.lower():
            return h.value
    return None


def make_message(subject: str = "Hello", message_id: str | None = "<m1@fabrikam.test>", body: str = "Hi there.\r\n",
                 extra_headers: str = "", sender: str = "john@fabrikam.test", to: str = "alice@contoso.com") -> bytes:
    head = f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
    if message_id:
        head += f"Message-ID: {message_id}\r\n"
    return (head + extra_headers + "\r\n" + body).encode()


# -- SMTP clients ---------------------------------------------------------------------------------------------


def send_sync(port: int, sender: str, recipients: list[str], msg: bytes, host: str = "127.0.0.1",
              login: tuple[str, str] | None = None, mechanism: str = "PLAIN", starttls: bool = False,
              mail_options: tuple[str, ...] = ()) -> tuple[dict[str, tuple[int, bytes]], tuple[int, bytes]]:
    """Send one message with smtplib; returns (refused recipients, the reply to end of DATA).

    Raises smtplib exceptions as smtplib does (all recipients refused, sender refused, DATA refused).
    """
    import ssl

    with smtplib.SMTP(host, port, local_hostname="client.fabrikam.test", timeout=10) as s:
        s.ehlo()
        if starttls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s.starttls(context=ctx)
            s.ehlo()
        if login:
            s.user, s.password = login
            auth = s.auth_plain if mechanism == "PLAIN" else s.auth_login
            s.auth(mechanism, auth, initial_response_ok=True)
        code, resp = s.mail(sender, list(mail_options))
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, resp, sender)
        refused = {}
        for r in recipients:
            code, resp = s.rcpt(r)
            if code not in (250, 251):
                refused[r] = (code, resp)
        if len(refused) == len(recipients):
            raise smtplib.SMTPRecipientsRefused(refused)
        reply = s.data(msg)
        return refused, reply


async def send(port: int, sender: str, recipients: list[str], msg: bytes, **kw: Any):
    return await asyncio.to_thread(send_sync, port, sender, recipients, msg, **kw)


class RawSmtp:
    """A protocol-exact SMTP client on asyncio streams: write bytes, read whole (multi-line) replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.banner = ""

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1", read_banner: bool = True) -> "RawSmtp":
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(reader, writer)
        if read_banner:
            client.banner = await client.reply()
        return client

    async def reply(self, timeout: float = 5.0) -> str:
        """One reply; continuation lines joined with newlines."""
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), timeout)
            if not line:
                raise ConnectionError("connection closed by the server: " + " | ".join(lines))
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return "\n".join(lines)

    async def cmd(self, line: str) -> str:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def closed(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection (EOF) within the timeout."""
        try:
            data = await asyncio.wait_for(self.reader.read(), timeout)
        except (ConnectionError, asyncio.TimeoutError):
            return False
        return data == b"" or self.reader.at_eof()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def data(c: RawSmtp, payload: bytes) -> str:
    """DATA, the payload as given (it must carry its own terminator), and the reply to end of data."""
    assert (await c.cmd("DATA")).startswith("354 ")
    await c.write(payload)
    return await c.reply()


async def raw_session(port: int, sender: str = "john@fabrikam.test",
                      recipients: tuple[str, ...] = ("alice@contoso.com",)) -> RawSmtp:
    """A session already through EHLO, MAIL and RCPT (each answered 250)."""
    c = await RawSmtp.connect(port)
    assert (await c.cmd("EHLO client.fabrikam.test")).startswith("250")
    assert (await c.cmd(f"MAIL FROM:<{sender}>")).startswith("250 2.1.0")
    for r in recipients:
        assert (await c.cmd(f"RCPT TO:<{r}>")).startswith("250 2.1.5")
    return c


# -- subprocess hubs -------------------------------------------------------------------------------------


async def smtp_load(port: int, message_ids: list[str], sessions: int, accepted: list[str],
                    recipient: str = "alice@contoso.com") -> None:
    """`sessions` concurrent SMTP sessions sending one message per id until all are sent or the hub dies;
    the ids answered 250 are appended to `accepted`."""
    ids = iter(message_ids)

    async def session() -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return

        async def reply() -> str:
            while True:
                line = (await reader.readline()).decode()
                if not line:
                    raise ConnectionError
                if line[3:4] != "-":
                    return line

        try:
            await reply()
            writer.write(b"EHLO load.test\r\n")
            await reply()
            for mid in ids:
                writer.write(f"MAIL FROM:<load@fabrikam.test>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode())
                for _ in range(3):
                    await reply()
                writer.write(make_message(subject=f"load {mid}", message_id=mid, body="x" * 2000 + "\r\n") + b".\r\n")
                if (await reply()).startswith("250"):
                    accepted.append(mid)
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()

    await asyncio.gather(*(session() for _ in range(sessions)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class HubProcess:
    """`transport run -c CFG` in a subprocess; `start()` waits for the `transport hub ready` line."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc: subprocess.Popen | None = None
        self.ready_line = ""

    def start(self, timeout: float = 15.0) -> "HubProcess":
        self.proc = subprocess.Popen(
            [str(TRANSPORT_BIN), "run", "-c", str(self.config), "--log-level", "WARNING"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(REPO), env=subprocess_env(), text=True)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"hub exited before ready (rc={self.proc.wait()}): {err}")
            if line.startswith("transport hub ready"):
                self.ready_line = line
                return self
        raise AssertionError("hub did not print `transport hub ready` in time")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Make sure the process is gone (used in finally blocks)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr) if self.proc else ():
            if stream:
                stream.close()


def run_cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run([str(TRANSPORT_BIN), *args], capture_output=True, text=True, cwd=str(REPO),
                          env=subprocess_env(), timeout=timeout)


def wait_file(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting for a file condition")


# -- test agents (named in configurations as `hubtools:Class`) -----------------------------------------------


class StampScl(SmtpReceiveAgent):
    """Stamps an SCL at end of data, as a content filter would (X-Test-SCL: n overrides the configured one)."""

    name = "Test SCL Stamper"

    class Config(AgentConfig):
        scl: int = 7

    async def on_end_of_data(self, event: EndOfDataEvent) -> None:
        wanted = event.mail_item.header("X-Test-SCL")  # lets one hub test several levels
        event.mail_item.scl = int(wanted) if wanted is not None else self.config.scl


class Crash(SmtpReceiveAgent):
    """Raises at the events listed in its configuration."""

    name = "Test Crasher"

    class Config(AgentConfig):
        events: list[str] = ["on_end_of_data"]

    async def _maybe(self, event: Any) -> None:
        if event.name in self.config.events:
            raise RuntimeError(f"boom in {event.name}")

    on_connect = on_ehlo = on_mail_from = on_rcpt_to = on_data = on_end_of_headers = on_end_of_data = _maybe


class Act(SmtpReceiveAgent):
    """Takes one configured action at one configured receive event (and records which events it saw)."""

    name = "Test Actor"

    class Config(AgentConfig):
        event: str = "on_end_of_data"
        action: str = "reject"  # reject | delete | disconnect | quarantine | reject_connection
        code: int = 550
        enhanced: str = "5.7.1"
        text: str = "Rejected by test agent"

    def __init__(self, config: Any, context: Any) -> None:
        super().__init__(config, context)
        self.seen: list[str] = []

    async def _hook(self, event: Any) -> None:
        self.seen.append(event.name)
        if event.name != self.config.event:
            return
        response = SmtpResponse(self.config.code, self.config.enhanced, self.config.text)
        action = self.config.action
        if action == "reject_connection":
            event.reject_connection(response, "test")
        elif action == "reject":
            if hasattr(event, "reject_message"):
                event.reject_message(response, "test")
            else:
                event.reject_command(response, "test")
        elif action == "delete":
            event.delete_message("test")
        elif action == "quarantine":
            event.quarantine("test")
        elif action == "disconnect":
            event.disconnect("test")
        else:
            raise ValueError(action)

    on_connect = on_ehlo = on_mail_from = on_rcpt_to = on_data = on_end_of_headers = on_end_of_data = _hook


class RouteTrace(RoutingAgent):
    """Records the routing events it sees (on itself and as X-Route-Trace headers); can defer once or delete."""

    name = "Test Route Trace"

    class Config(AgentConfig):
        defer_at: str = ""
        defer_seconds: float = 0.3
        delete_at: str = ""
        crash_at: str = ""

    def __init__(self, config: Any, context: Any) -> None:
        super().__init__(config, context)
        self.seen: list[tuple[str, str]] = []
        self.deferred: set[str] = set()

    async def _hook(self, event: Any) -> None:
        item = event.mail_item
        self.seen.append((event.name, item.message_id))
        item.append_headers([("X-Route-Trace", event.name)])
        if event.name == self.config.crash_at:
            raise RuntimeError("routing agent crashed")
        if event.name == self.config.delete_at:
            event.delete("test delete")
        elif event.name == self.config.defer_at and item.message_id not in self.deferred:
            self.deferred.add(item.message_id)
            event.defer(self.config.defer_seconds, SmtpResponse(451, "4.7.0", "test defer"), "test defer")

    on_submitted = on_resolved = on_routed = on_categorized = _hook


class Hold(RoutingAgent):
    """While `hold_file` exists, writes `seen_file` and never finishes on_submitted (to SIGKILL a busy hub)."""

    name = "Test Hold"

    class Config(AgentConfig):
        hold_file: str
        seen_file: str

    async def on_submitted(self, event: SubmittedEvent) -> None:
        if Path(self.config.hold_file).exists():
            Path(self.config.seen_file).write_text(event.mail_item.message_id)
            await asyncio.sleep(3600)



class Watch(SmtpReceiveAgent):
    """Records every receive event it sees, with the rejection for on_reject."""

    name = "Test Watch"

    def __init__(self, config: Any, context: Any) -> None:
        super().__init__(config, context)
        self.seen: list[str] = []

    async def _hook(self, event: Any) -> None:
        rejection = getattr(event, "rejection", None)
        self.seen.append(f"{event.name} {rejection}" if rejection is not None else event.name)

    on_connect = on_helo = on_ehlo = on_starttls = on_auth = on_mail_from = on_rcpt_to = on_data = _hook
    on_end_of_headers = on_end_of_data = on_rset = on_reject = on_disconnect = _hook


class OddStamp(SmtpReceiveAgent):
    """Stamps something that cannot be pickled (nor written as JSON) on the message whose subject says so."""

    name = "Test Odd Stamp"

    async def on_end_of_data(self, event: EndOfDataEvent) -> None:
        if event.mail_item.subject == "odd":
            event.mail_item.stamps["test-odd"] = lambda: None


class FailInWorker(SmtpReceiveAgent):
    """Cannot start in a receive worker process (it starts in the hub's), as an agent missing a file there would."""

    name = "Test Fail In Worker"

    async def start(self) -> None:
        if sys.argv[0].endswith("worker_process.py"):
            raise RuntimeError("this agent cannot start in a receive worker")


class BlockLoop(SmtpReceiveAgent):
    """Blocks its process's event loop (a blocking call in an agent) on a message with the subject "hang"."""

    name = "Test Block Loop"

    async def on_end_of_data(self, event: EndOfDataEvent) -> None:
        if event.mail_item.subject == "hang":
            time.sleep(120)
