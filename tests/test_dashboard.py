"""The dashboard over HTTP: every page's JSON is what the command line's `--json` prints, actions need the token,
bad input is a sentence, and `transport run` serves it beside the hub (on a thread of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from hubtools import (HubProcess, free_port, make_message, messages, run_cli, running_hub, scheduler_ticks, send,
                      tracking, wait_file, wait_for, write_config)
from transport.dashboard.server import build_app, listen

TOKEN = "s3cret-lab-token"
DASHBOARD = {"dashboard": {"enabled": True, "binding": "127.0.0.1:0", "token": TOKEN}}


def request(base: str, path: str, method: str = "GET", data: dict[str, str] | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    """(status, body, headers) of one request, 4xx and 5xx included; redirects are not followed."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    body = urllib.parse.urlencode(data).encode() if data is not None else (b"" if method == "POST" else None)
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


async def call(base: str, path: str, **kw: Any) -> tuple[int, Any]:
    status, body, headers = await asyncio.to_thread(request, base, path, **kw)
    return status, json.loads(body) if headers.get("Content-Type", "").startswith("application/json") else body


def cli_json(config: Path, *args: str) -> Any:
    result = run_cli(*args, "--json", "-c", str(config))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@contextlib.asynccontextmanager
async def dashboard_of(hub: Any) -> AsyncIterator[str]:
    """The hub's dashboard on a free port (in the test's process: `transport run` gives it a process of its own)."""
    runner, (host, port) = await listen(build_app(hub.config, hub.pipeline.table), "127.0.0.1", 0)
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def hub_and_dashboard(tmp_path):
    async with running_hub(tmp_path, DASHBOARD) as hub, dashboard_of(hub) as base:
        yield hub, base, tmp_path / "transport.yaml"


async def test_queues_json_is_what_queue_list_prints(hub_and_dashboard):
    hub, base, config = hub_and_dashboard
    status, queues = await call(base, "/api/queues")
    assert status == 200
    assert [q["identity"] for q in queues] == ["hub.contoso.com\\Submission", "hub.contoso.com\\mailbox"]
    assert queues == await asyncio.to_thread(cli_json, config, "queue", "list")
    status, page = await call(base, "/queues")
    assert status == 200 and "hub.contoso.com\\mailbox" in page and "SmtpDeliveryToMailbox" in page


async def test_actions_need_the_token(hub_and_dashboard):
    hub, base, config = hub_and_dashboard
    for headers in ({}, {"X-Transport-Token": "wrong"}):
        status, body = await call(base, "/api/queues/mailbox/suspend", method="POST", headers=headers)
        assert status == 403 and "dashboard token" in body["error"]
    status, body = await call(base, "/queues/mailbox/suspend", method="POST", data={"token": "wrong"})
    assert status == 403 and "403 Forbidden" in body
    await scheduler_ticks(hub)
    assert hub.scheduler.suspended == set()
    assert {q["status"] for q in await asyncio.to_thread(cli_json, config, "queue", "list")} == {"Ready"}
    # with it, as a header (scripts) or a form field (the page, which is sent back to the queue list)
    status, body = await call(base, "/api/queues/mailbox/suspend", method="POST", headers={"X-Transport-Token": TOKEN})
    assert (status, body) == (200, {"queue": "mailbox", "status": "Suspended"})
    await wait_for(lambda: hub.scheduler.suspended == {"mailbox"})
    status, _, headers = await asyncio.to_thread(request, base, "/queues/mailbox/resume", "POST", {"token": TOKEN})
    assert status == 303 and headers["Location"].startswith("/queues?done=")
    await wait_for(lambda: hub.scheduler.suspended == set())


async def test_a_dashboard_without_a_token_only_reads(tmp_path):
    async with running_hub(tmp_path, {"dashboard": {"enabled": True, "binding": "127.0.0.1:0"}}) as hub, \
            dashboard_of(hub) as base:
        status, body = await call(base, "/api/queues/mailbox/suspend", method="POST", headers={"X-Transport-Token": ""})
        assert status == 403 and "only reads" in body["error"]
        assert (await call(base, "/api/queues"))[0] == 200


async def test_message_actions_and_tracking(hub_and_dashboard):
    hub, base, config = hub_and_dashboard
    auth = {"X-Transport-Token": TOKEN}
    await call(base, "/api/queues/mailbox/suspend", method="POST", headers=auth)
    await wait_for(lambda: hub.scheduler.suspended == {"mailbox"})
    await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<d1@t>"))
    await wait_for(lambda: hub.store.items("queue='mailbox'"))
    status, listed = await call(base, "/api/queues/mailbox")
    assert listed == await asyncio.to_thread(cli_json, config, "queue", "messages", "mailbox")
    number = listed[0]["internal_message_id"]
    status, body = await call(base, f"/api/messages/{number}/export", method="POST", headers=auth)
    assert status == 400 and "suspend message" in body["error"]
    status, body = await call(base, f"/api/messages/{number}/suspend", method="POST", headers=auth)
    assert status == 200 and body["status"] == "Suspended"
    status, exported, headers = await asyncio.to_thread(request, base, f"/queues/mailbox/messages/{number}/export",
                                                        "POST", {"token": TOKEN})
    assert status == 200 and "X-Receiver: <alice@contoso.com>" in exported and "attachment" in headers["Content-Disposition"]
    status, body = await call(base, f"/api/messages/{number}/remove", method="POST", headers=auth)
    assert status == 200 and body["removed"] is True and body["with_ndr"] is False
    assert hub.store.items() == []
    status, rows = await call(base, "/api/track?message_id=d1@t")  # the angle brackets are added
    assert [r["event-id"] for r in rows] == ["RECEIVE", "SUBMIT", "DROP"]
    assert rows == [r for r in tracking(hub) if r["message-id"] == "<d1@t>"]
    status, rows = await call(base, "/api/track?event=DROP&sender=JOHN@fabrikam.test")
    assert [r["message-id"] for r in rows] == ["<d1@t>"]


async def test_track_timeline_and_mailbox_pages(hub_and_dashboard):
    hub, base, config = hub_and_dashboard
    await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"],
               make_message(subject="Quarterly numbers", message_id="<d2@t>"))
    await wait_for(lambda: messages(hub, "alice@contoso.com"))
    assert await hub.idle()  # the file shows in new/ before its DELIVER row is written
    status, page = await call(base, "/track?message_id=%3Cd2%40t%3E")
    assert status == 200 and 'id="timeline"' in page
    assert [e in page for e in ("RECEIVE", "SUBMIT", "DELIVER")] == [True, True, True]
    status, boxes = await call(base, "/api/mailboxes")
    assert {b["address"]: b["folders"]["Inbox"] for b in boxes}["alice@contoso.com"] == 1
    status, inbox = await call(base, "/api/mailboxes/alice@contoso.com?folder=Inbox")
    assert [m["subject"] for m in inbox] == ["Quarterly numbers"]
    status, message = await call(base, f"/api/mailboxes/alice@contoso.com/Inbox/{inbox[0]['file']}")
    stamped = {h["name"] for h in message["headers"] if h["stamped"]}
    assert "X-MS-Exchange-Organization-AuthAs" in stamped and "Received" in stamped and "Subject" not in stamped
    status, page = await call(base, f"/mailboxes/alice@contoso.com/Inbox/{inbox[0]['file']}")
    assert status == 200 and 'class="stamped"' in page


async def test_bad_input_is_a_sentence(hub_and_dashboard):
    hub, base, config = hub_and_dashboard
    status, body = await call(base, "/api/queues/nowhere")
    assert status == 400 and "no queue 'nowhere'" in body["error"]
    status, body = await call(base, "/api/track?internal_id=seven")
    assert status == 400 and "not a number" in body["error"]
    status, page = await call(base, "/mailboxes/nobody@contoso.com")
    assert status == 200 and "there is no mailbox nobody@contoso.com" in page
    status, body = await call(base, "/api/mailboxes/alice@contoso.com?folder=Spam")
    assert status == 400 and "no folder 'Spam'" in body["error"]
    status, _, headers = await asyncio.to_thread(request, base, "/queues/nowhere/suspend", "POST", {"token": TOKEN})
    assert status == 303 and "error=" in headers["Location"]
    status, overview = await call(base, "/api/overview")
    assert status == 200 and overview["configuration"]["receive_connectors"][0]["name"] == "Default Frontend"


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _ended(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"  # exited, not yet reaped
    except OSError:
        return True


def test_transport_run_serves_the_dashboard_in_a_process_that_ends_with_the_hub(tmp_path):
    port = free_port()
    config = write_config(tmp_path, {"receive": {"bindings": [f"127.0.0.1:{free_port()}"]},
                                     "dashboard": {"enabled": True, "binding": f"127.0.0.1:{port}", "token": TOKEN}})
    for ending in (signal.SIGKILL, signal.SIGTERM):
        hub = HubProcess(config).start()
        try:
            assert f"dashboard on http://127.0.0.1:{port}/" in hub.ready_line
            status, body, _ = request(f"http://127.0.0.1:{port}", "/api/queues")
            assert status == 200 and json.loads(body)[0]["identity"] == "hub.contoso.com\\Submission"
            dashboard = _children(hub.proc.pid)
            assert len(dashboard) == 1
            hub.signal(ending)
            assert hub.wait() == (0 if ending == signal.SIGTERM else -signal.SIGKILL)
            wait_file(lambda: _ended(dashboard[0]))  # gone with the hub, however it ended
        finally:
            hub.stop()


def test_a_dashboard_binding_that_is_taken_stops_transport_run(tmp_path):
    with socket.socket() as taken:  # another program holds the dashboard's port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        config = write_config(tmp_path, {"receive": {"bindings": [f"127.0.0.1:{free_port()}"]},
                                         "dashboard": {"enabled": True, "binding": f"127.0.0.1:{busy}"}})
        result = run_cli("run", "-c", str(config))
    assert result.returncode == 1
    assert f"dashboard.binding: cannot listen on 127.0.0.1:{busy}" in result.stderr and "Traceback" not in result.stderr


async def test_unreachable_offers_only_retry_with_resubmit(hub_and_dashboard):
    hub, base, config = hub_and_dashboard
    await send(hub.addresses[0][1], "alice@contoso.com", ["x@fabrikam.test"], make_message(message_id="<u1@t>"),
               login=("alice@contoso.com", "Passw0rd!"))
    await wait_for(lambda: hub.store.items("queue='Unreachable'"))
    status, page = await call(base, "/queues")
    row = page[page.index('data-queue="Unreachable"'):].split("</tr>")[0]
    assert status == 200 and "/queues/Unreachable/resubmit" in row and "/queues/Unreachable/retry" not in row
    status, body = await call(base, "/api/queues/Unreachable/retry", method="POST", headers={"X-Transport-Token": TOKEN})
    assert status == 400 and "--resubmit" in body["error"]
    status, body = await call(base, "/api/queues/Unreachable/resubmit", method="POST", headers={"X-Transport-Token": TOKEN})
    assert (status, body) == (200, {"queue": "Unreachable", "messages": 1, "resubmit": True})


async def test_trace_json_is_what_transport_trace_prints(hub_and_dashboard):
    hub, base, config = hub_and_dashboard
    form = {"client_ip": "192.0.2.10", "helo": "mail.fabrikam.test", "recipients": "alice@contoso.com, bob@contoso.com",
            "message": make_message(subject="Traced").decode()}
    status, trace = await call(base, "/api/trace", method="POST", data=form)
    assert status == 200
    assert {a: d["where"] for a, d in trace["disposition"].items()} == {"alice@contoso.com": "Inbox", "bob@contoso.com": "Inbox"}
    assert trace["session"]["client_ip"] == "192.0.2.10" and trace["sender"] == "john@fabrikam.test"
    status, page = await call(base, "/trace", method="POST", data=form)
    assert status == 200 and 'id="verdict"' in page and "bob@contoso.com: <strong>Inbox</strong>" in page
    assert hub.store.items() == [] and messages(hub, "alice@contoso.com") == []  # a trace queues nothing
    status, page = await call(base, "/trace", method="POST", data={"client_ip": "192.0.2.10", "message": " "})
    assert status == 200 and "give the message" in page and 'value="192.0.2.10"' in page
    status, body = await call(base, "/api/trace", method="POST", data={"message": "not a message at all"})
    assert status == 400 and body["error"]
