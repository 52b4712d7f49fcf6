"""The Pickup directory: Exchange's rules, limits, the receive agents, badmail and crash safety, on real files,
a real hub and a real SQLite store."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import os
from pathlib import Path
from typing import Any

import pytest

from agents import AgentConfig, EndOfDataEvent, SmtpReceiveAgent, SmtpResponse
from hubtools import directory_scans, drop_file, HubProcess, make_message, messages, running_hub, send, tracking, wait_file, wait_for, write_config
from pickup.watcher import DirectoryWatcher
from transport.hub import Hub

TESTSUITES = Path(__file__).resolve().parents[1].parent / "shared" / "testsuites"
FAST = {"pickup": {"poll_interval": 0.05}, "replay": {"poll_interval": 0.05}}


def pickup_dir(hub: Hub) -> Path:
    path = hub.config.pickup.directory(hub.config.data_root)
    assert path is not None
    return path




def eml(*headers: str, body: str = "Hello from the pickup directory.") -> bytes:
    return ("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode()


def badmail_reason(hub: Hub, stem: str) -> str:
    text = (hub.config.data_root / "badmail" / f"{stem}.bad.txt").read_text()
    return text.split("Reason: ", 1)[1].strip()


async def settled(hub: Hub, *names: str, timeout: float = 5.0) -> dict[str, dict[str, str]]:
    """Wait until each dropped file has a RECEIVE or BADMAIL row; returns name → that row."""
    def rows() -> dict[str, dict[str, str]] | None:
        found = {r["source-context"]: r for r in tracking(hub) if r["event-id"] in ("RECEIVE", "BADMAIL") and r["source"] != "DSN"}
        return found if all(n in found for n in names) else None
    return await wait_for(rows, timeout=timeout)


class SessionRecorder(SmtpReceiveAgent):
    """Records every receive event with the session facts; refuses blocked@ at RCPT; obeys X-Test-Action at EOD."""

    name = "Test Session Recorder"

    def __init__(self, config: AgentConfig, context: Any) -> None:
        super().__init__(config, context)
        self.events: list[tuple[str, str, str]] = []

    async def _record(self, event: Any) -> None:
        self.events.append((event.name, event.session.client_ip, event.session.helo))
        recipient = getattr(event, "recipient", None)
        if recipient is not None and recipient.address.startswith("blocked@"):
            event.reject_command(SmtpResponse(550, "5.7.1", "Recipient blocked by test"), "blocked")

    async def on_end_of_data(self, event: EndOfDataEvent) -> None:
        await self._record(event)
        action = event.mail_item.header("X-Test-Action")
        if action == "reject":
            event.reject_message(SmtpResponse(550, "5.7.1", "Message rejected due to content restrictions"), "test")
        elif action == "delete":
            event.delete_message("test")

    on_connect = on_ehlo = on_mail_from = on_rcpt_to = on_data = on_end_of_headers = on_disconnect = _record


def recorder(hub: Hub) -> SessionRecorder:
    agent = hub.pipeline.agents[0].agent
    assert isinstance(agent, SessionRecorder)
    return agent


WITH_RECORDER = {**FAST, "internal_smtp_servers": ["10.0.0.0/8"],
                 "agents": [{"class": "test_pickup:SessionRecorder"}]}


# -- Exchange's rules ----------------------------------------------------------------------------------------


async def test_dropped_file_is_queued_and_delivered_with_pickup_headers(tmp_path: Path) -> None:
    async with running_hub(tmp_path, FAST) as hub:
        drop_file(pickup_dir(hub), "hello.eml", eml(
            "Received: from relay.fabrikam.test ([203.0.113.5]) by mx.fabrikam.test; Mon, 1 Jan 2024 00:00:00 +0000",
            "Resent-From: someone@fabrikam.test", "Resent-Date: Mon, 1 Jan 2024 00:00:00 +0000",
            "X-MS-Exchange-Organization-SCL: -1", "From: John Doe <john@fabrikam.test>",
            "To: Alice <alice@contoso.com>", "Cc: bob@contoso.com", "Bcc: carol@contoso.com", "Subject: Dropped"))
        await wait_for(lambda: messages(hub, "carol@contoso.com") and messages(hub, "alice@contoso.com"))
        assert list(pickup_dir(hub).iterdir()) == []
        delivered = messages(hub, "alice@contoso.com")[0]
        head = delivered.split(b"\r\n\r\n", 1)[0].decode()
        assert "Received: from localhost by Pickup with Microsoft SMTP Server id " in head
        assert "relay.fabrikam.test" not in head and "Resent-" not in head and "\r\nBcc:" not in head
        assert "X-MS-Exchange-Organization-SCL" not in head  # a dropped file cannot set its own SCL
        assert "Message-ID: <" in head and "@contoso.com>" in head and "\r\nDate: " in head
        assert messages(hub, "bob@contoso.com")
        receive = [r for r in tracking(hub) if r["event-id"] == "RECEIVE"]
        assert [(r["source"], r["source-context"], r["sender-address"]) for r in receive] == [
            ("PICKUP", "hello.eml", "john@fabrikam.test")]
        assert sorted(receive[0]["recipient-address"].split(";")) == [
            "alice@contoso.com", "bob@contoso.com", "carol@contoso.com"]


async def test_bcc_only_message_gets_undisclosed_recipients(tmp_path: Path) -> None:
    async with running_hub(tmp_path, FAST) as hub:
        drop_file(pickup_dir(hub), "bcc.eml", eml("From: john@fabrikam.test", "Bcc: alice@contoso.com, bob@contoso.com",
                                             "Subject: Bcc only", "Message-ID: <keep@fabrikam.test>",
                                             "Date: Mon, 1 Jan 2024 00:00:00 +0000"))
        await wait_for(lambda: messages(hub, "alice@contoso.com") and messages(hub, "bob@contoso.com"))
        head = messages(hub, "bob@contoso.com")[0].split(b"\r\n\r\n", 1)[0].decode()
        assert "To: Undisclosed Recipients:;" in head and "\r\nBcc:" not in head
        assert "Message-ID: <keep@fabrikam.test>" in head and head.count("Message-ID") == 1
        assert "Date: Mon, 1 Jan 2024 00:00:00 +0000" in head and head.count("\r\nDate:") == 1


async def test_envelope_sender_and_recipient_rules(tmp_path: Path) -> None:
    files = {
        "from-wins.eml": eml("From: john@fabrikam.test", "Sender: secretary@fabrikam.test", "To: alice@contoso.com"),
        "sender-chooses.eml": eml("From: a@fabrikam.test, b@fabrikam.test", "Sender: b@fabrikam.test",
                                  "To: alice@contoso.com"),
        "sender-only.eml": eml("Sender: robot@fabrikam.test", "To: alice@contoso.com"),
        "two-from.eml": eml("From: a@fabrikam.test, b@fabrikam.test", "To: alice@contoso.com"),
        "two-senders.eml": eml("From: a@fabrikam.test", "Sender: a@fabrikam.test, b@fabrikam.test",
                               "To: alice@contoso.com"),
        "no-sender.eml": eml("To: alice@contoso.com", "Subject: anonymous"),
        "bad-sender.eml": eml("From: not-an-address", "To: alice@contoso.com"),
        "no-recipients.eml": eml("From: john@fabrikam.test", "Subject: to nobody"),
        "bad-recipients.eml": eml("From: john@fabrikam.test", "To: alice, bob"),
        "one-bad-recipient.eml": eml("From: john@fabrikam.test", "To: alice@contoso.com, bob"),
        "empty.eml": b"",
        "blank.eml": b"\r\n \r\n",
        "cr-only.eml": b"From: john@fabrikam.test\rTo: alice@contoso.com\r\rHi\r",
        "random.eml": bytes(range(256)) * 4,
        "prose.eml": b"Dear Alice,\r\nthis is not a message file.\r\n",
        "nul-header.eml": b"From: john@fabrikam.test\r\nTo: alice@contoso.com\r\nSubject: n\x00ul\r\n\r\nHi\r\n",
    }
    async with running_hub(tmp_path, FAST) as hub:
        for name, content in files.items():
            drop_file(pickup_dir(hub), name, content)
        (pickup_dir(hub) / "notes.txt").write_text("not a message")
        rows = await settled(hub, *files)
        senders = {n: r["sender-address"] for n, r in rows.items() if r["event-id"] == "RECEIVE"}
        assert senders == {"from-wins.eml": "john@fabrikam.test", "sender-chooses.eml": "b@fabrikam.test",
                           "sender-only.eml": "robot@fabrikam.test", "one-bad-recipient.eml": "john@fabrikam.test"}
        reasons = {n[:-4]: badmail_reason(hub, n[:-4]) for n, r in rows.items() if r["event-id"] == "BADMAIL"}
        assert "Sender field naming one of them is required" in reasons["two-from"]
        assert "Sender field holds 2 addresses" in reasons["two-senders"]
        assert "no sender" in reasons["no-sender"]
        assert reasons["empty"] == "the file is empty" and reasons["blank"] == "the file holds only white space"
        assert "lines end in CR alone" in reasons["cr-only"]
        assert reasons["random"] == reasons["prose"] == (
            "the file is not a message: it does not start with a header field (Name: value)")
        assert reasons["nul-header"] == "the file is not a message: its header block holds a NUL byte"
        assert "'not-an-address' is not an SMTP address" in reasons["bad-sender"]
        assert "no recipients" in reasons["no-recipients"]
        assert "no recipient is an SMTP address: alice, bob" in reasons["bad-recipients"]
        assert rows["two-from.eml"]["recipient-status"] == reasons["two-from"]  # BADMAIL row carries the reason
        failed = [r for r in tracking(hub)
                  if r["event-id"] == "FAIL" and r["source-context"] == "one-bad-recipient.eml"]
        assert [(r["recipient-address"], r["recipient-status"]) for r in failed] == [
            ("bob", "550 5.1.3 Invalid recipient address")]
        await wait_for(lambda: len(messages(hub, "alice@contoso.com")) == 4)
        assert sorted(p.name for p in pickup_dir(hub).iterdir()) == ["notes.txt"]
        assert (hub.config.data_root / "badmail" / "two-from.bad").read_bytes() == files["two-from.eml"]


async def test_x_sender_and_x_receiver_give_the_envelope(tmp_path: Path) -> None:
    async with running_hub(tmp_path, FAST) as hub:
        drop_file(pickup_dir(hub), "x.eml", eml("X-Sender: <bounce@fabrikam.test> BODY=8BITMIME",
                                           "X-Receiver: <bob@contoso.com> NOTIFY=NEVER",
                                           "From: john@fabrikam.test", "To: alice@contoso.com", "Subject: X"))
        rows = await settled(hub, "x.eml")
        assert rows["x.eml"]["sender-address"] == "bounce@fabrikam.test"
        assert rows["x.eml"]["recipient-address"] == "bob@contoso.com"
        await wait_for(lambda: messages(hub, "bob@contoso.com"))
        head = messages(hub, "bob@contoso.com")[0].split(b"\r\n\r\n", 1)[0].decode()
        assert "X-Sender" not in head and "X-Receiver" not in head and "To: alice@contoso.com" in head
        assert messages(hub, "alice@contoso.com") == []


# -- limits ----------------------------------------------------------------------------------------------------


async def test_header_size_and_recipient_limits(tmp_path: Path) -> None:
    limits = {"pickup": {"poll_interval": 0.05, "max_header_size": "1KB", "max_recipients_per_message": 3}}
    async with running_hub(tmp_path, limits) as hub:
        drop_file(pickup_dir(hub), "big-header.eml", eml("From: john@fabrikam.test", "To: alice@contoso.com",
                                                     "X-Padding: " + "x" * 1100))
        many = ", ".join(f"user{i}@contoso.com" for i in range(4))
        drop_file(pickup_dir(hub), "many.eml", eml("From: john@fabrikam.test", f"To: {many}"))
        drop_file(pickup_dir(hub), "three.eml", eml("From: john@fabrikam.test",
                                               "To: alice@contoso.com, bob@contoso.com, carol@contoso.com"))
        rows = await settled(hub, "big-header.eml", "many.eml", "three.eml")
        assert [rows[n]["event-id"] for n in ("big-header.eml", "many.eml", "three.eml")] == [
            "BADMAIL", "BADMAIL", "RECEIVE"]
        assert "over PickupDirectoryMaxHeaderSize (1024 bytes)" in badmail_reason(hub, "big-header")
        assert "4 recipients, over PickupDirectoryMaxRecipientsPerMessage (3)" in badmail_reason(hub, "many")


async def test_messages_per_minute(tmp_path: Path) -> None:
    async with running_hub(tmp_path, {"pickup": {"poll_interval": 0.05, "max_messages_per_minute": 3}}) as hub:
        for i in range(5):
            drop_file(pickup_dir(hub), f"m{i}.eml", eml("From: john@fabrikam.test", "To: alice@contoso.com"))
        await settled(hub, "m0.eml", "m1.eml", "m2.eml")
        [pickup, _] = hub.watchers
        assert pickup.rate_limit.available() == 0 and pickup.rate_limit.wait() > 1  # the minute's three are used
        assert sorted(p.name for p in pickup_dir(hub).iterdir()) == ["m3.eml", "m4.eml"]
        assert len([r for r in tracking(hub) if r["event-id"] == "RECEIVE"]) == 3


def test_defaults_are_exchanges() -> None:
    from transport.core.config import TransportConfig

    config = TransportConfig()
    assert (config.pickup.max_messages_per_minute, config.pickup.max_header_size,
            config.pickup.max_recipients_per_message, config.pickup.run_receive_agents) == (100, 64 * 1024, 100, True)
    assert config.pickup.directory(Path("/var/x")) == Path("/var/x/pickup")
    assert config.replay.directory(Path("/var/x")) == Path("/var/x/replay")
    off = TransportConfig.model_validate({"pickup": {"path": ""}, "replay": {"path": None}})
    assert off.pickup.directory(Path("/v")) is None and off.replay.directory(Path("/v")) is None


async def test_empty_path_turns_the_directory_off(tmp_path: Path) -> None:
    async with running_hub(tmp_path, {"pickup": {"path": ""}, "replay": {"path": ""}}) as hub:
        assert hub.watchers == []
        assert not (hub.config.data_root / "pickup").exists()


# -- the receive agents ------------------------------------------------------------------------------------------


async def test_receive_agents_see_the_session_simulated_from_the_file(tmp_path: Path) -> None:
    trace = ["Received: from localhost ([127.0.0.1]) by relay.contoso.com; Mon, 1 Jan 2024 00:00:02 +0000",
             "Received: from edge.contoso.com ([10.1.2.3]) by relay.contoso.com; Mon, 1 Jan 2024 00:00:01 +0000",
             "Received: from mail.fabrikam.test (mail.fabrikam.test [198.51.100.7]) by edge.contoso.com;"
             " Mon, 1 Jan 2024 00:00:00 +0000"]
    async with running_hub(tmp_path, WITH_RECORDER) as hub:
        drop_file(pickup_dir(hub), "captured.eml", eml(*trace, "From: john@fabrikam.test",
                                                  "To: alice@contoso.com, blocked@contoso.com"))
        drop_file(pickup_dir(hub), "plain.eml", eml("From: john@fabrikam.test", "To: bob@contoso.com"))
        rows = await settled(hub, "captured.eml", "plain.eml")
        events = recorder(hub).events
        captured = [e for e in events if e[1] == "198.51.100.7"]
        assert [e[0] for e in captured] == [
            "on_connect", "on_ehlo", "on_mail_from", "on_rcpt_to", "on_rcpt_to", "on_data", "on_end_of_headers",
            "on_end_of_data", "on_disconnect"]
        assert {e[2] for e in captured} == {"mail.fabrikam.test"}
        assert ("on_connect", "127.0.0.1", "localhost") in events  # no Received line: a local submission
        assert rows["captured.eml"]["client-ip"] == "198.51.100.7"
        assert rows["captured.eml"]["recipient-address"] == "alice@contoso.com;blocked@contoso.com"  # the envelope
        failed = [r for r in tracking(hub) if r["event-id"] == "FAIL" and r["source-context"] == "captured.eml"]
        assert [(r["recipient-address"], r["recipient-status"]) for r in failed] == [
            ("blocked@contoso.com", "550 5.7.1 Recipient blocked by test")]


async def test_agent_verdicts_decide_the_file(tmp_path: Path) -> None:
    async with running_hub(tmp_path, WITH_RECORDER) as hub:
        drop_file(pickup_dir(hub), "rejected.eml", eml("From: john@fabrikam.test", "To: alice@contoso.com",
                                                  "X-Test-Action: reject"))
        drop_file(pickup_dir(hub), "deleted.eml", eml("From: john@fabrikam.test", "To: alice@contoso.com",
                                                 "X-Test-Action: delete"))
        drop_file(pickup_dir(hub), "all-blocked.eml", eml("From: john@fabrikam.test", "To: blocked@contoso.com"))
        await wait_for(lambda: not list(pickup_dir(hub).iterdir()))
        await settled(hub, "rejected.eml", "all-blocked.eml")
        assert badmail_reason(hub, "rejected") == (
            "Test Session Recorder rejected the message: 550 5.7.1 Message rejected due to content restrictions (test)")
        assert badmail_reason(hub, "all-blocked") == "every recipient was refused at RCPT TO"
        deleted = [r for r in tracking(hub) if r["source-context"] == "deleted.eml"]
        assert [r["event-id"] for r in deleted] == ["AGENTINFO"]
        assert not (hub.config.data_root / "badmail" / "deleted.bad").exists()
        assert messages(hub, "alice@contoso.com") == []


async def test_receive_agents_can_be_turned_off(tmp_path: Path) -> None:
    exact = {**WITH_RECORDER, "pickup": {"poll_interval": 0.05, "run_receive_agents": False}}
    async with running_hub(tmp_path, exact) as hub:
        drop_file(pickup_dir(hub), "exchange.eml", eml("From: john@fabrikam.test", "To: alice@contoso.com",
                                                  "X-Test-Action: reject"))
        await wait_for(lambda: messages(hub, "alice@contoso.com"))
        assert recorder(hub).events == []


# -- the public corpus, with SMTP served meanwhile ------------------------------------------------------------------


async def test_every_corpus_message_ends_queued_or_bad_while_smtp_is_served(tmp_path: Path) -> None:
    corpus = TESTSUITES / "email-messages"
    if not corpus.is_dir():
        pytest.skip(f"the shared test suites are not at {corpus}")
    files = sorted(corpus.glob("malformed-dovecot/*.eml")) + sorted(corpus.glob("rfc-examples/*.eml"))
    assert len(files) >= 30
    async with running_hub(tmp_path, {"pickup": {"poll_interval": 0.05, "max_messages_per_minute": 0}}) as hub:
        names = []
        for path in files:
            name = f"{path.parent.name}-{path.name}"
            drop_file(pickup_dir(hub), name, path.read_bytes())
            names.append(name)
        port = hub.addresses[0][1]
        replies = await asyncio.gather(*(send(port, "john@fabrikam.test", ["alice@contoso.com"],
                                              make_message(subject=f"smtp {i}")) for i in range(5)))
        assert all(reply[1][0] == 250 for reply in replies)
        rows = await settled(hub, *names, timeout=10)
        for name in names:
            if rows[name]["event-id"] == "BADMAIL":
                assert badmail_reason(hub, name[:-4]), name
        outcome = {r["event-id"] for r in rows.values()}
        assert outcome == {"RECEIVE", "BADMAIL"}
        assert list(pickup_dir(hub).iterdir()) == []
        await wait_for(lambda: len(messages(hub, "alice@contoso.com")) >= 5)


# -- crash safety -----------------------------------------------------------------------------------------------------


async def test_leftover_tmp_files_go_back_to_eml_and_are_submitted(tmp_path: Path) -> None:
    pickup = tmp_path / "data" / "pickup"
    pickup.mkdir(parents=True)
    (pickup / "left.tmp").write_bytes(eml("From: john@fabrikam.test", "To: alice@contoso.com", "Subject: left"))
    async with running_hub(tmp_path, FAST) as hub:
        await wait_for(lambda: messages(hub, "alice@contoso.com"))
        assert [r["source-context"] for r in tracking(hub) if r["event-id"] == "RECEIVE"] == ["left.eml"]


async def test_file_queued_before_a_crash_is_not_submitted_again(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The crash window: the message is committed, the file is still there (as .tmp)."""
    with monkeypatch.context() as m:
        m.setattr(DirectoryWatcher, "_settle", lambda self, claims, outcomes: ([], []))  # "crash" before cleanup
        async with running_hub(tmp_path, FAST) as hub:
            drop_file(pickup_dir(hub), "once.eml", eml("From: john@fabrikam.test", "To: alice@contoso.com"))
            await wait_for(lambda: messages(hub, "alice@contoso.com"))
            assert [p.name for p in pickup_dir(hub).iterdir()] == ["once.tmp"]
    async with running_hub(tmp_path, FAST) as hub:
        await wait_for(lambda: not list(pickup_dir(hub).iterdir()))
        await directory_scans(hub)
        assert len(messages(hub, "alice@contoso.com")) == 1
        assert len([r for r in tracking(hub) if r["event-id"] == "RECEIVE"]) == 1
        assert hub.store.read("SELECT COUNT(*) FROM file_claims") == [(0,)]


def test_sigkill_mid_pickup_loses_nothing_and_queues_nothing_twice(tmp_path: Path) -> None:
    """A real hub process killed with SIGKILL while claiming: after a restart every file is queued exactly once.

    The recipients are outside the organisation, so every message waits in the queue database, where it can
    be counted.
    """
    count = 300
    config = write_config(tmp_path, {"queue": {"durable": True, "batch_size": 8},
                                     "pickup": {"poll_interval": 0.05, "max_messages_per_minute": 0}})
    pickup = tmp_path / "data" / "pickup"
    for i in range(count):
        drop_file(pickup, f"k{i:03}.eml", eml("From: john@fabrikam.test", "To: someone@fabrikam.test",
                                         f"Subject: kill test {i:03}"))
    hub = HubProcess(config).start()
    try:
        wait_file(lambda: len([p for p in pickup.iterdir() if p.suffix == ".eml"]) < count - 20, timeout=15)
        hub.signal(signal.SIGKILL)
        hub.wait()
    finally:
        hub.stop()
    left = sorted(p.suffix for p in pickup.iterdir())
    assert left, "the kill came too late to test anything"
    hub = HubProcess(config).start()
    try:
        wait_file(lambda: not any(pickup.iterdir()), timeout=20)
    finally:
        hub.signal(signal.SIGTERM)
        hub.wait()
        hub.stop()
    with sqlite3.connect(tmp_path / "data" / "queue" / "mail.que") as db:
        subjects = [s for (s,) in db.execute("SELECT subject FROM messages")]
        claims = db.execute("SELECT COUNT(*) FROM file_claims").fetchone()[0]
    assert len(subjects) == count and len(set(subjects)) == count
    assert claims == 0
    assert not (tmp_path / "data" / "badmail").exists()


async def test_a_file_name_that_is_not_utf8_is_queued_once(tmp_path):
    async with running_hub(tmp_path, FAST) as hub:
        name = os.fsdecode(b"\xff\xfeodd.eml")
        drop_file(pickup_dir(hub), name, make_message(subject="odd name", message_id="<odd@t>"))
        await wait_for(lambda: messages(hub, "alice@contoso.com"), timeout=5)
        await wait_for(lambda: not list(pickup_dir(hub).iterdir()))
        assert len(messages(hub, "alice@contoso.com")) == 1
        assert [r["event-id"] for r in tracking(hub) if r["message-id"] == "<odd@t>"].count("RECEIVE") == 1
