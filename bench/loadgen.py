"""The load generator: N concurrent SMTP sessions sending M messages of a given size, on asyncio streams.

A deliberately small client (EHLO, MAIL, RCPT, DATA, QUIT; no pipelining: every command waits for its reply)
so that what is measured is the server. A session sends ``messages_per_session`` transactions one after the
other (no RSET between them: a successful DATA ends the transaction), then QUITs and reconnects, until the
run's M messages are taken. The rate reported is accepted (250 after DATA) per second, from the first connect
to the last 250.

Closed loop by default: each session sends as fast as the replies come, which finds the maximum rate. With
``rate`` set the load is paced (open loop): the k-th message of the run starts no earlier than k / rate seconds
after the start, whichever session sends it, so latencies are measured at a load the server does not set.
"""

from __future__ import annotations

import asyncio
import math
import resource
import time
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["LoadSpec", "LoadResult", "run_load", "make_body", "percentile"]

REPLY_TIMEOUT = 120.0  # seconds for a greeting and EHLO, a whole transaction, or QUIT
_FILLER = (b"The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. 0123456789\r\n")


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of the values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


def make_body(size: int) -> bytes:
    """A text body so that headers + body come to about `size` bytes, with DATA's terminator."""
    n = max(0, size - 300)
    reps = n // len(_FILLER) + 1
    body = (_FILLER * reps)[:n]
    cut = body.rfind(b"\r\n")
    body = body[:cut + 2] if cut >= 0 else b""
    return body + b".\r\n"


@dataclass
class LoadSpec:
    host: str
    port: int
    sessions: int = 10
    messages: int = 2000
    size: int = 4096
    messages_per_session: int = 1
    sender: str = "bench@fabrikam.com"
    recipient: str = "alice@contoso.com"
    tag: str = "run"  # goes into the Subject, so the tracking log can tell warm-up from measured messages
    helo: str = "loadgen.bench.test"
    rate: float | None = None  # messages started per second over all sessions; None: as fast as replies come


@dataclass
class LoadResult:
    spec: LoadSpec
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)  # reply text -> count (5xx after MAIL, RCPT, DATA)
    deferred: Counter = field(default_factory=Counter)  # 4xx reply text -> count; the message was sent again
    errors: Counter = field(default_factory=Counter)  # connection-level problems -> count
    connections: int = 0
    started_wall: float = 0.0
    elapsed: float = 0.0  # first connect to last 250
    accept_latency_ms: list[float] = field(default_factory=list)  # end of DATA sent -> 250 read
    client_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.accepted / self.elapsed if self.elapsed > 0 else 0.0

    def problems(self) -> str:
        parts = [f"{n}x {text}" for text, n in (self.rejected + self.errors).most_common(3)]
        parts += [f"{n}x deferred, sent again: {text}" for text, n in self.deferred.most_common(2)]
        return "; ".join(parts)


class _Tickets:
    def __init__(self, n: int) -> None:
        self.left = n

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True

    def give_back(self) -> None:
        self.left += 1


class _Pacer:
    """Hands out start times 1 / rate apart; a session late for its slot starts at once (it catches up)."""

    def __init__(self, rate: float | None, start: float) -> None:
        self.interval = 1 / rate if rate else 0.0
        self.next = start

    async def wait(self) -> None:
        if not self.interval:
            return
        slot, self.next = self.next, self.next + self.interval
        delay = slot - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)


RETRY_DELAY = 0.1  # seconds a session waits after a 4xx (back pressure) before sending the message again


class _Session:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def reply(self) -> tuple[int, bytes]:
        first = b""
        while True:
            line = await self.reader.readline()  # under the caller's timeout (see `_worker`)
            if not line:
                raise ConnectionError("server closed the connection")
            if not first:
                first = line
            if line[3:4] != b"-":
                break
        try:
            return int(first[:3]), first.rstrip()
        except ValueError:
            raise ConnectionError(f"unreadable reply {first[:40]!r}") from None

    async def command(self, line: bytes) -> tuple[int, bytes]:
        self.writer.write(line)
        return await self.reply()

    def close(self) -> None:
        self.writer.close()


async def _worker(spec: LoadSpec, tickets: _Tickets, pacer: _Pacer, result: LoadResult, state: dict,
                  body: bytes) -> None:
    mail = f"MAIL FROM:<{spec.sender}>\r\n".encode()
    rcpt = f"RCPT TO:<{spec.recipient}>\r\n".encode()
    ehlo = f"EHLO {spec.helo}\r\n".encode()
    head_fmt = (f"From: Bench <{spec.sender}>\r\nTo: Alice <{spec.recipient}>\r\n"
                f"Subject: bench {spec.tag} %d\r\nDate: Thu, 26 Nov 2026 12:00:00 +0000\r\n"
                f"Message-ID: <%d.%s@loadgen.bench.test>\r\nMIME-Version: 1.0\r\n"
                f"Content-Type: text/plain; charset=us-ascii\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    while tickets.left > 0:
        await pacer.wait()  # the slot of the session's first message: connecting is part of sending it
        if tickets.left <= 0:  # taken by other sessions while this one waited
            break
        try:
            reader, writer = await asyncio.open_connection(spec.host, spec.port)
        except OSError as e:
            result.errors[f"connect: {e.strerror or e}"] += 1
            await asyncio.sleep(0.05)
            if sum(result.errors.values()) > max(50, spec.messages // 20):
                raise RuntimeError(f"too many connection errors: {result.problems()}") from None
            continue
        result.connections += 1
        s = _Session(reader, writer)
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                code, text = await s.reply()
                if code == 220:
                    code = (await s.command(ehlo))[0]
            if code != 250:
                result.errors[f"session refused: {text.decode(errors='replace')[:70]}"] += 1
                if sum(result.errors.values()) > max(50, spec.messages // 20):
                    raise RuntimeError(f"too many refused sessions: {result.problems()}")
                continue
            sent = 0
            while sent < spec.messages_per_session and tickets.take():
                if sent:
                    await pacer.wait()
                sent += 1
                state["n"] += 1
                n = state["n"]

                async def refused(stage: str, code: int, text: bytes, reset: bool = True) -> None:
                    """A 4xx is temporary: the message goes back to the pool (as an MTA would retry it);
                    a 5xx is final. Past `max_deferrals` a 4xx counts as final too."""
                    reason = f"{stage}: {text.decode(errors='replace')[:70]}"
                    if 400 <= code < 500 and sum(result.deferred.values()) < spec.messages * 20:
                        result.deferred[reason] += 1
                        tickets.give_back()
                        if reset:
                            await s.command(b"RSET\r\n")
                        await asyncio.sleep(RETRY_DELAY)
                    else:
                        result.rejected[reason] += 1
                        if reset:
                            await s.command(b"RSET\r\n")

                async with asyncio.timeout(REPLY_TIMEOUT):  # one timer a message: wait_for would make a task per read
                    code, text = await s.command(mail)
                    if code != 250:
                        await refused("MAIL", code, text)
                        continue
                    code, text = await s.command(rcpt)
                    if code != 250:
                        await refused("RCPT", code, text)
                        continue
                    code, text = await s.command(b"DATA\r\n")
                    if code != 354:
                        await refused("DATA", code, text)
                        continue
                    s.writer.write(head_fmt % (n, n, spec.tag.encode()) + body)  # one send, not two
                    t0 = loop.time()
                    code, text = await s.reply()
                    t1 = loop.time()
                    if code == 250:
                        result.accepted += 1
                        result.accept_latency_ms.append((t1 - t0) * 1000)
                        state["last"] = t1
                    else:
                        await refused("end of DATA", code, text, reset=False)
            async with asyncio.timeout(REPLY_TIMEOUT):
                await s.command(b"QUIT\r\n")
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, OSError) as e:
            result.errors[f"session: {type(e).__name__}: {e}"[:90]] += 1
            if sum(result.errors.values()) > max(50, spec.messages // 20):
                raise RuntimeError(f"too many session errors: {result.problems()}") from None
        finally:
            s.close()


async def run_load(spec: LoadSpec, result: LoadResult | None = None) -> LoadResult:
    """Send the spec's messages; returns counts, the accepted rate and the accept latencies.

    Pass `result` to watch `result.accepted` grow while the load runs (the memory scenario samples with it).
    """
    result = result if result is not None else LoadResult(spec)
    body = make_body(spec.size)
    tickets = _Tickets(spec.messages)
    loop = asyncio.get_running_loop()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    result.started_wall = time.time()
    t0 = loop.time()
    state = {"n": 0, "last": t0}
    pacer = _Pacer(spec.rate, t0)
    workers = [asyncio.create_task(_worker(spec, tickets, pacer, result, state, body))
               for _ in range(spec.sessions)]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    result.elapsed = state["last"] - t0
    result.client_cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return result

