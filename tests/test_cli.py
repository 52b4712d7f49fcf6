"""The `transport` command in subprocesses: check-config, pipeline, run (ready line, SIGTERM, SIGKILL + restart)."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess

import pytest

from hubtools import (
    HubProcess, agent, events_for, header_value, make_message, messages, run_cli, send_sync, tracking, wait_file,
    write_config,
)

ONE_LINE_ERROR = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+): (?P<key>[\w.]+): (?P<problem>.+)$")


def port_of(ready_line: str) -> int:
    m = re.match(r"transport hub ready: SMTP on 127\.0\.0\.1:(\d+);", ready_line)
    assert m, ready_line
    return int(m.group(1))


def assert_one_line_error(result: subprocess.CompletedProcess, file: str, line: int, key: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    m = ONE_LINE_ERROR.match(lines[0])
    assert m, lines[0]
    assert (m["file"], int(m["line"]), m["key"]) == (file, line, key)
    return m["problem"]


BAD_CONFIG = """\
organization:
  name: Contoso
receive:
  bindings: ["127.0.0.1:0"]
  max_message_size: lots
"""


# -- check-config -------------------------------------------------------------------------------------------


def test_check_config_ok(tmp_path):
    cfg = write_config(tmp_path, {"agents": [agent("examples.recipient_block:RecipientBlockAgent")]})
    result = run_cli("check-config", "-c", str(cfg))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{cfg}: OK (1 accepted domain(s), 3 mailbox(es), 1 agent(s) enabled)"


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_bad_config_is_one_line_and_exit_1(tmp_path, command):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(BAD_CONFIG)
    problem = assert_one_line_error(run_cli(command, "-c", str(cfg)), str(cfg), 5, "receive.max_message_size")
    assert problem.startswith("'lots' is not a size")


@pytest.mark.parametrize("command", ["check-config", "run", "pipeline"])
def test_agent_that_cannot_load_is_one_line(tmp_path, command):
    cfg = write_config(tmp_path, {"agents": [agent("examples.recipient_block:RecipientBlockAgent"),
                                             agent("no_such_pkg.module:Agent")]})
    text = cfg.read_text().splitlines()
    line = next(i for i, t in enumerate(text, 1) if "no_such_pkg" in t)
    problem = assert_one_line_error(run_cli(command, "-c", str(cfg)), str(cfg), line, "agents.1.class")
    assert "cannot import 'no_such_pkg.module'" in problem


def test_missing_config_file(tmp_path):
    result = run_cli("check-config", "-c", str(tmp_path / "absent.yaml"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"{tmp_path / 'absent.yaml'}: cannot read: No such file or directory"


def test_defaults_lists_every_setting():
    result = run_cli("check-config", "--defaults")
    assert result.returncode == 0
    out = result.stdout
    assert 'receive.max_message_size = 37748736  # MaxMessageSize' in out
    assert 'organization.scl_junk_threshold = 4  # ' in out
    assert 'queue.poison_threshold = 2  # PoisonThreshold' in out


# -- pipeline ------------------------------------------------------------------------------------------------


PIPELINE_AGENTS = [
    {**agent("hubtools:RouteTrace", priority=30), "name": "Router"},
    {**agent("examples.recipient_block:RecipientBlockAgent", priority=20), "name": "Blocker"},
    {**agent("hubtools:StampScl", priority=5, on_error="fail_closed"), "name": "Scorer"},
    {**agent("hubtools:StampScl", priority=1), "name": "Off", "enabled": False},
]


def test_pipeline_prints_agents_in_priority_order(tmp_path):
    cfg = write_config(tmp_path, {"agents": PIPELINE_AGENTS})
    result = run_cli("pipeline", "-c", str(cfg))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["event", "agent", "priority", "kind", "on_error", "calls", "errors"]
    rows = [line.split() for line in lines[2:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("OnRcptCommand", "Blocker", "20"),
        ("OnEndOfData", "Scorer", "5"),
        ("OnEndOfData", "Blocker", "20"),
        ("OnSubmittedMessage", "Router", "30"),
        ("OnResolvedMessage", "Router", "30"),
        ("OnRoutedMessage", "Router", "30"),
        ("OnCategorizedMessage", "Router", "30"),
    ]
    assert rows[1][3:] == ["SmtpReceiveAgent", "fail_closed", "0", "0"]  # no hub has run: no calls


def test_pipeline_json(tmp_path):
    cfg = write_config(tmp_path, {"agents": PIPELINE_AGENTS})
    result = run_cli("pipeline", "-c", str(cfg), "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    eod = [r for r in rows if r["event"] == "OnEndOfData"]
    assert [(r["agent"], r["priority"], r["kind"], r["on_error"]) for r in eod] == [
        ("Scorer", 5, "SmtpReceiveAgent", "fail_closed"), ("Blocker", 20, "SmtpReceiveAgent", "fail_open")]
    assert all(r["calls"] == 0 and r["errors"] == 0 for r in rows)
    assert "Off" not in {r["agent"] for r in rows}


def test_pipeline_without_agents(tmp_path):
    result = run_cli("pipeline", "-c", str(write_config(tmp_path)))
    assert (result.returncode, result.stdout.strip()) == (0, "No transport agents are enabled.")
    assert json.loads(run_cli("pipeline", "-c", str(write_config(tmp_path)), "--json").stdout) == []


# -- run -----------------------------------------------------------------------------------------------------


def test_run_on_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = write_config(tmp_path, {"receive": {"bindings": [f"127.0.0.1:{port}"]}})
        result = run_cli("run", "-c", str(cfg), "--log-level", "WARNING")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"{cfg}:{cfg.read_text().splitlines().index('  bindings:') + 1}: receive.bindings: cannot listen on 127.0.0.1:{port}: ")
    assert "address already in use" in result.stderr.lower()


def test_sigterm_exits_0_after_serving(tmp_path):
    hub = HubProcess(write_config(tmp_path)).start()
    try:
        port = port_of(hub.ready_line)
        assert str(tmp_path / "data") in hub.ready_line
        _, reply = send_sync(port, "john@fabrikam.test", ["alice@contoso.com"],
                             make_message(message_id="<term@fabrikam.test>"))
        assert reply[0] == 250
        wait_file(lambda: messages(tmp_path / "data", "alice@contoso.com"))
        hub.signal(signal.SIGTERM)
        assert hub.wait(15) == 0
        assert "Traceback" not in hub.proc.stderr.read()
        # the tracking log was flushed on the way out
        assert events_for(tracking(tmp_path / "data"), "<term@fabrikam.test>") == ["RECEIVE", "SUBMIT", "DELIVER"]
    finally:
        hub.stop()


def test_message_in_process_at_sigkill_is_delivered_after_restart(tmp_path):
    hold, seen = tmp_path / "hold", tmp_path / "seen"
    hold.touch()
    cfg = write_config(tmp_path, {"agents": [agent("hubtools:Hold", hold_file=str(hold), seen_file=str(seen))]})
    data_root = tmp_path / "data"
    hub = HubProcess(cfg).start()
    try:
        _, reply = send_sync(port_of(hub.ready_line), "john@fabrikam.test", ["alice@contoso.com", "bob@contoso.com"],
                             make_message(message_id="<killed@fabrikam.test>"))
        assert reply[0] == 250  # acknowledged: it is the hub's now
        assert wait_file(seen.exists)  # the categorizer holds it "in process"
        hub.signal(signal.SIGKILL)
        assert hub.wait(10) == -signal.SIGKILL
    finally:
        hub.stop()
    assert messages(data_root, "alice@contoso.com") == []
    hold.unlink()
    hub = HubProcess(cfg).start()
    try:
        wait_file(lambda: messages(data_root, "alice@contoso.com") and messages(data_root, "bob@contoso.com"))
        hub.signal(signal.SIGTERM)  # a clean stop lets every queue finish: a second copy would be written by then
        assert hub.wait(15) == 0
    finally:
        hub.stop()
    for who in ("alice", "bob"):
        [raw] = messages(data_root, f"{who}@contoso.com")
        assert header_value(raw, "Message-ID") == "<killed@fabrikam.test>"
    rows = events_for(tracking(data_root), "<killed@fabrikam.test>")
    assert rows.count("DELIVER") == 2 and rows.count("RECEIVE") == 1  # rows are written through: none lost


def test_sigkill_right_after_the_250_loses_nothing(tmp_path):
    """Three messages answered 250 and still queued when the hub is killed: after the restart each is delivered
    exactly once, and the tracking log has one RECEIVE and one DELIVER row for each."""
    hold, seen = tmp_path / "hold", tmp_path / "seen"
    hold.touch()
    data_root = tmp_path / "data"
    held = {"queue": {"durable": True},
            "agents": [agent("hubtools:Hold", hold_file=str(hold), seen_file=str(seen))]}
    hub = HubProcess(write_config(tmp_path, held)).start()
    try:
        port = port_of(hub.ready_line)
        for n in range(3):
            _, reply = send_sync(port, "john@fabrikam.test", ["alice@contoso.com"],
                                 make_message(message_id=f"<k{n}@fabrikam.test>"))
            assert reply[0] == 250
        assert wait_file(seen.exists)  # the first is held in the categorizer: none can have been delivered
        hub.signal(signal.SIGKILL)
        hub.wait(10)
    finally:
        hub.stop()
    assert messages(data_root, "alice@contoso.com") == []
    hold.unlink()
    hub = HubProcess(write_config(tmp_path, held)).start()
    try:
        wanted = [f"<k{n}@fabrikam.test>" for n in range(3)]
        wait_file(lambda: sorted(header_value(m, "Message-ID") for m in messages(data_root, "alice@contoso.com"))
                  == wanted)
        hub.signal(signal.SIGTERM)
        assert hub.wait(15) == 0
    finally:
        hub.stop()
    assert sorted(header_value(m, "Message-ID") for m in messages(data_root, "alice@contoso.com")) == wanted
    rows = tracking(data_root)
    for message_id in wanted:
        events = events_for(rows, message_id)
        assert (events.count("RECEIVE"), events.count("DELIVER")) == (1, 1), (message_id, events)


def test_the_hubs_loop_threads_do_not_preempt_the_event_loop():
    """`to_thread` work of the hub's loop (Maildir writes) runs in SCHED_BATCH threads (transport.core.loop_threads)."""
    import asyncio
    import os

    from transport.process_setup import EventLoop, loop_factory

    loop = loop_factory(EventLoop.AUTO)()
    try:
        policy = loop.run_until_complete(asyncio.to_thread(os.sched_getscheduler, 0))
    finally:
        loop.close()
    assert policy == os.SCHED_BATCH


def test_run_serves_on_uvloop_when_installed_and_says_when_it_is_not(monkeypatch):
    """README: `transport run [--event-loop auto|asyncio|uvloop]` — on uvloop when it is installed."""
    import importlib.util
    import sys

    from transport.process_setup import EventLoop, loop_factory
    from transport.core.errors import TransportError

    def kind(choice: EventLoop) -> str:
        loop = loop_factory(choice)()
        try:
            return type(loop).__module__.split(".")[0]
        finally:
            loop.close()

    assert kind(EventLoop.ASYNCIO) == "asyncio"
    if importlib.util.find_spec("uvloop") is not None:
        assert kind(EventLoop.AUTO) == "uvloop" == kind(EventLoop.UVLOOP)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as without the `speed` extra: the import fails
    assert kind(EventLoop.AUTO) == "asyncio"
    with pytest.raises(TransportError, match=r"--event-loop uvloop: uvloop is not installed \(pip install '\.\[speed\]'\)"):
        loop_factory(EventLoop.UVLOOP)
