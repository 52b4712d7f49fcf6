"""The benchmark's own pieces: message bodies, percentiles, the tracking-log reader, the configurations it
writes, agent discovery, py-spy output parsing, the disk's settling before the rounds. Fast; no servers started."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench import disk
from bench.loadgen import make_body, percentile
from bench.profile import _parse_collapsed, _thread_view
from bench.targets import EXAMPLE_AGENT, Target, discover_agents, hub_config, remove_left_on_disk, tracking_times
from transport.core.config import TransportConfig
from transport.core.tracking import FIELDS


def test_body_has_the_requested_size_and_ends_data() -> None:
    for size in (4096, 100 * 1024, 5 * 1024 * 1024):
        body = make_body(size)
        assert body.endswith(b"\r\n.\r\n")
        assert size - 500 < len(body) + 300 <= size + 10
        assert b"\r\n." not in body[:-5]  # nothing to dot-stuff


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([7.0], 99) == 7.0


def test_hub_configs_validate() -> None:
    for target in (Target("b", "no agents", "hub"), Target("c", "all", "hub", [EXAMPLE_AGENT]),
                   Target("n", "not durable", "hub", durable=False)):
        cfg = TransportConfig.model_validate(hub_config(target, Path("/tmp/bench-var"), pickup=True))
        assert cfg.receive.bindings == ["127.0.0.1:0"]
        assert cfg.queue.durable is target.durable
        assert cfg.mailbox("alice@contoso.com") is not None


def test_discovered_agents_are_agent_classes() -> None:
    from transport.core.pipeline import resolve_class

    specs, notes = discover_agents()
    found = {spec.rpartition(":")[2] for spec in specs}
    assert {"ConnectionFilteringAgent", "SenderFilterAgent", "RecipientFilterAgent", "ReverseDnsAgent",
            "SenderIdAgent", "ContentFilterAgent"} <= found, (specs, notes)
    for spec in specs:
        assert spec.startswith("agents.")
        resolve_class(spec)
    assert notes == []  # every module under agents/ imports


def _row(event: str, mid: int, when: str, subject: str) -> str:
    values = dict.fromkeys(FIELDS, "")
    values.update({"date-time": when, "event-id": event, "internal-message-id": str(mid), "message-subject": subject})
    return ",".join(values[f] for f in FIELDS)


def test_tracking_times_pair_receive_submit_deliver(tmp_path: Path) -> None:
    folder = tmp_path / "logs" / "MessageTracking"
    folder.mkdir(parents=True)
    rows = [
        _row("RECEIVE", 1, "2026-11-26T12:00:00.000Z", "bench r1 1"),
        _row("SUBMIT", 1, "2026-11-26T12:00:00.010Z", "bench r1 1"),
        _row("DELIVER", 1, "2026-11-26T12:00:00.050Z", "bench r1 1"),
        _row("RECEIVE", 2, "2026-11-26T12:00:00.000Z", "bench warmup 2"),
        _row("DELIVER", 2, "2026-11-26T12:00:09.000Z", "bench warmup 2"),
    ]
    (folder / "MSGTRK20261126-1.log").write_text(
        "#Software: x\r\n#Fields: " + ",".join(FIELDS) + "\r\n" + "\r\n".join(rows) + "\r\n")
    times = tracking_times(tmp_path, "r1")
    assert times.delivered == 1
    assert [round(x) for x in times.total_ms] == [50]
    assert [round(x) for x in times.queued_ms] == [10]
    assert [round(x) for x in times.delivery_ms] == [40]


def test_py_spy_collapsed_stacks() -> None:
    text = ("<module> (transport/__main__.py);Handle._run (asyncio/events.py);f (a.py);g (b.py) 3\n"
            "<module> (transport/__main__.py);Handle._run (asyncio/events.py);f (a.py) 1\n")
    total, inclusive, own, by_file = _parse_collapsed(text)
    assert total == 4
    assert inclusive["f (a.py)"] == 4 and inclusive["g (b.py)"] == 3
    assert "Handle._run (asyncio/events.py)" not in inclusive  # event-loop frames are left out
    assert own["g (b.py)"] == 3 and by_file["a.py"] == 1
    threads = ("thread (1): MainThread;f (a.py) 50\n"
               "thread (2): asyncio_0;w (m.py) 20\nthread (3): asyncio_1;w (m.py) 5\n")
    lines = _thread_view(threads, seconds=1.0, rate=100)
    assert any("MainThread" in line and "50%" in line for line in lines)
    assert any("asyncio to_thread pool" in line and "| 2 " in line and "25%" in line for line in lines)


async def test_load_generator_sends_again_after_4xx_and_counts_5xx() -> None:
    """Against a scripted server: MAIL gets 452 once (back pressure), the third message 550 at end of DATA."""
    import asyncio

    from bench.loadgen import LoadSpec, run_load

    mails = 0
    datas = 0

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal mails, datas
        writer.write(b"220 fake ready\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-fake\r\n250 8BITMIME\r\n")
            elif verb == b"MAIL":
                mails += 1
                writer.write(b"452 4.3.1 Insufficient system resources\r\n" if mails == 1 else b"250 OK\r\n")
            elif verb in (b"RCPT", b"RSET"):
                writer.write(b"250 OK\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go\r\n")
                while (await reader.readline()) != b".\r\n":
                    pass
                datas += 1
                writer.write(b"550 5.7.1 no\r\n" if datas == 3 else b"250 2.6.0 queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
        writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await run_load(LoadSpec("127.0.0.1", port, sessions=2, messages=6, size=1024, messages_per_session=2))
    assert result.accepted == 5
    assert sum(result.deferred.values()) == 1 and sum(result.rejected.values()) == 1
    assert "550 5.7.1" in result.problems() and "deferred" in result.problems()
    assert not result.errors


async def test_load_generator_gives_up_on_a_server_that_stops_answering(monkeypatch) -> None:
    """A server that answers EHLO and then never MAIL FROM: each message's transaction times out as a session
    error (the message is not sent again), so the run ends instead of waiting for ever."""
    import asyncio

    from bench import loadgen

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 fake ready\r\n")
        while line := await reader.readline():
            if line[:4].upper() == b"EHLO":
                writer.write(b"250 fake\r\n")
        writer.close()

    monkeypatch.setattr(loadgen, "REPLY_TIMEOUT", 0.05)
    server = await asyncio.start_server(session, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await asyncio.wait_for(loadgen.run_load(loadgen.LoadSpec("127.0.0.1", port, sessions=2, messages=10,
                                                                          size=1024)), 30)
    assert result.accepted == 0
    assert list(result.errors) == ["session: TimeoutError: "] and result.errors["session: TimeoutError: "] == 10


def test_settle_probes_file_creation_and_keeps_the_probe_files_until_the_run_ends(tmp_path: Path) -> None:
    """One probe when the limit leaves no time for a second; its files stay until the end of the run, since
    deleting them would free inodes of its own."""
    settling = asyncio.run(disk.settle(tmp_path, limit=disk.PROBE_INTERVAL / 2))
    [cost] = settling.probes
    assert cost > 0 and settling.quiet == (cost <= disk.QUIET_US) and settling.waited < disk.PROBE_INTERVAL
    [probe] = tmp_path.glob("create-probe-*")
    assert len(list(probe.iterdir())) == disk.PROBE_FILES
    remove_left_on_disk()
    assert not probe.exists()


def test_settle_waits_up_to_its_limit_while_file_creation_stays_dear(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """With no cost counting as quiet, it probes every interval until the limit and says the rates are low."""
    monkeypatch.setattr(disk, "QUIET_US", 0.0)
    monkeypatch.setattr(disk, "PROBE_INTERVAL", 0.2)
    settling = asyncio.run(disk.settle(tmp_path, limit=1.0))
    remove_left_on_disk()
    # it stops when one more interval would pass the limit: after 0.8 s, before 1 s and one probe's time
    assert not settling.quiet and len(settling.probes) >= 2 and 0.8 < settling.waited < 2.0
    assert "above the 0 µs of a quiet disk" in settling.sentence() and "longer `--settle`" in settling.sentence()


def test_settle_zero_probes_nothing_and_the_report_says_so(tmp_path: Path) -> None:
    settling = asyncio.run(disk.settle(tmp_path, limit=0))
    assert settling.probes == [] and not list(tmp_path.iterdir())
    assert "not probed" in settling.sentence() and "--settle 0" in settling.sentence()


def test_the_report_says_how_long_the_bench_waited_for_a_disk_that_was_freeing_inodes() -> None:
    waited = disk.Settling(probes=[900.0, 361.0, 20.0], waited=20.4).sentence()
    assert "waited 20 s" in waited and "cost 20 µs" in waited and "900, 361, 20 µs" in waited
    assert "nothing was waited for" in disk.Settling(probes=[15.0]).sentence()
