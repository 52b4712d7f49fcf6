"""The Replay directory: the X-header envelope format (export → replay round trip), trusted and untrusted
files, and resubmission through a real hub."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from hubtools import drop_file, PASSWORD, RawSmtp, messages, run_cli, running_hub, tracking, wait_for
from transport.core.replay_format import ReplayFormatError, created_by, parse, read_injected, serialize
from transport.hub import Hub
from transport.core.mailitem import MailItem, Recipient, RecipientStatus, SessionInfo, Source

FAST = {"replay": {"poll_interval": 0.05}}


def replay_dir(hub: Hub) -> Path:
    path = hub.config.replay.directory(hub.config.data_root)
    assert path is not None
    return path




def sample_item() -> MailItem:
    return MailItem(
        sender="john@fabrikam.test",
        recipients=[Recipient("alice@contoso.com", {"NOTIFY": "SUCCESS,FAILURE", "ORCPT": "rfc822;alice@contoso.com"}),
                    Recipient("someone@fabrikam.test", {"NOTIFY": "NEVER"}),
                    Recipient("done@contoso.com", status=RecipientStatus.DELIVERED)],
        raw=b"From: john@fabrikam.test\r\nTo: alice@contoso.com\r\nSubject: Export\r\n\r\nBody\r\n.\r\n",
        mail_params={"BODY": "8BITMIME", "RET": "HDRS", "ENVID": "QQ314159", "AUTH": "<>", "SMTPUTF8": ""},
        session=SessionInfo(helo="mail.fabrikam.test", client_ip="198.51.100.7"))


# -- the format ---------------------------------------------------------------------------------------------------


def test_parse_of_serialize_round_trips() -> None:
    item = sample_item()
    data = serialize(item, "hub.contoso.com")
    assert data.startswith(b"X-Sender: <john@fabrikam.test> BODY=8BITMIME RET=HDRS ENVID=QQ314159 AUTH=<> SMTPUTF8\r\n"
                           b"X-Receiver: <alice@contoso.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice@contoso.com\r\n")
    assert b"X-CreatedBy: MSExchange15 (hub.contoso.com)\r\n" in data
    block, content = data.split(b"X-EndOfInjectedXHeaders: ", 1)
    count, content = content.split(b"\r\n", 1)
    assert int(count) == len(block) and content == item.raw
    back = parse(data)
    assert back.item.source is Source.REPLAY
    assert (back.item.sender, back.item.mail_params, back.item.raw) == (item.sender, item.mail_params, item.raw)
    assert back.item.recipients == item.pending()  # the delivered recipient is not replayed
    assert (back.item.session.helo, back.item.session.client_ip) == ("mail.fabrikam.test", "198.51.100.7")
    assert back.written_by("hub.contoso.com") and not back.written_by("other.contoso.com")


def test_null_sender_and_lf_files_round_trip() -> None:
    item = MailItem(sender="", recipients=[Recipient("alice@contoso.com")], raw=b"Subject: bounce\n\nbody\n")
    data = serialize(item, "hub.contoso.com")
    assert data.startswith(b"X-Sender: <>\nX-Receiver: <alice@contoso.com>\n")
    back = parse(data).item
    assert back.sender == "" and back.raw == item.raw and back.session.client_ip == ""


def test_nothing_to_replay_is_an_error() -> None:
    item = sample_item()
    for r in item.recipients:
        r.status = RecipientStatus.DELIVERED
    with pytest.raises(ValueError):
        serialize(item, "hub.contoso.com")


@pytest.mark.parametrize("data, problem", [
    (b"X-Receiver: <alice@contoso.com>\r\nSubject: x\r\n\r\n", "no X-Sender"),
    (b"X-Sender: <john@fabrikam.test>\r\nSubject: x\r\n\r\n", "no X-Receiver"),
    (b"X-Sender: <a@fabrikam.test>\r\nX-Sender: <b@fabrikam.test>\r\nX-Receiver: <c@contoso.com>\r\n\r\n",
     "more than one X-Sender"),
    (b"X-Sender: <john@fabrikam.test>\r\nX-Receiver: <alice>\r\n\r\n", "holds no SMTP address"),
    (b"X-Sender: <john\r\nX-Receiver: <alice@contoso.com>\r\n\r\n", "cannot read the address"),
    (b"Subject: no envelope at all\r\n\r\n", "no X-Sender"),
])
def test_incomplete_envelopes_are_refused(data: bytes, problem: str) -> None:
    with pytest.raises(ReplayFormatError, match=problem):
        parse(data)


def test_a_leading_x_source_alone_is_not_an_envelope() -> None:
    data = b"X-Source: /usr/bin/php\r\nX-Source-Args: x\r\nFrom: a@fabrikam.test\r\n\r\n"
    assert read_injected(data).end == 0
    block = b"X-Sender: <a@fabrikam.test>\r\nX-Source: SMTP\r\n"
    assert read_injected(block + b"From: a@fabrikam.test\r\n\r\n").end == len(block)


# -- the directory ----------------------------------------------------------------------------------------------------


async def test_replay_file_is_resubmitted_exactly_as_its_envelope_says(tmp_path: Path) -> None:
    data = (b"X-Sender: <john@fabrikam.test> BODY=8BITMIME ENVID=abc\r\n"
            b"X-Receiver: <alice@contoso.com> NOTIFY=FAILURE ORCPT=rfc822;alice@contoso.com\r\n"
            b"X-Receiver: <someone@fabrikam.test>\r\n"
            b"X-CreatedBy: MSExchange15\r\n"  # an Exchange export: not written by this hub
            b"X-HeloDomain: mail.fabrikam.test\r\nX-SourceIPAddress: 198.51.100.7\r\nX-EndOfInjectedXHeaders: 300\r\n"
            b"Received: from old.fabrikam.test ([192.0.2.1]) by mx.fabrikam.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
            b"X-MS-Exchange-Organization-SCL: -1\r\n"
            b"From: john@fabrikam.test\r\nTo: bob@contoso.com\r\nBcc: carol@contoso.com\r\nSubject: Replayed\r\n"
            b"Message-ID: <replayed@fabrikam.test>\r\n\r\nBody\r\n")
    async with running_hub(tmp_path, FAST) as hub:
        drop_file(replay_dir(hub), "exported.eml", data)
        await wait_for(lambda: messages(hub, "alice@contoso.com"))
        assert messages(hub, "bob@contoso.com") == [] and messages(hub, "carol@contoso.com") == []
        head = messages(hub, "alice@contoso.com")[0].split(b"\r\n\r\n", 1)[0].decode()
        assert "Received: from hub.contoso.com by Replay with Microsoft SMTP Server id " in head
        assert "Received: from old.fabrikam.test" in head  # the trace stays on a replayed message
        assert "X-MS-Exchange-Organization-SCL" not in head and "X-MS-Exchange-Organization-AuthAs: Anonymous" in head
        assert "X-Sender" not in head and "X-EndOfInjectedXHeaders" not in head and "\r\nBcc:" not in head
        receive = [r for r in tracking(hub) if r["event-id"] == "RECEIVE"]
        assert [(r["source"], r["source-context"], r["client-ip"], r["client-hostname"]) for r in receive] == [
            ("REPLAY", "exported.eml", "198.51.100.7", "mail.fabrikam.test")]
        waiting = await wait_for(lambda: hub.store.items("queue='Unreachable'"))
        item = hub.store.load_message(waiting[0].message)
        assert item is not None and item.source is Source.REPLAY
        assert item.mail_params == {"BODY": "8BITMIME", "ENVID": "abc"}
        assert [(r.address, r.params) for r in item.recipients] == [
            ("alice@contoso.com", {"NOTIFY": "FAILURE", "ORCPT": "rfc822;alice@contoso.com"}),
            ("someone@fabrikam.test", {})]


async def test_files_this_hub_wrote_keep_their_organization_headers(tmp_path: Path) -> None:
    item = MailItem(sender="john@fabrikam.test", recipients=[Recipient("alice@contoso.com")],
                    raw=b"X-MS-Exchange-Organization-AuthAs: Internal\r\nX-MS-Exchange-Organization-Probe: kept\r\n"
                        b"From: john@fabrikam.test\r\nTo: alice@contoso.com\r\nSubject: trusted\r\n\r\nBody\r\n")
    async with running_hub(tmp_path, FAST) as hub:
        drop_file(replay_dir(hub), "ours.eml", serialize(item, "hub.contoso.com"))
        drop_file(replay_dir(hub), "theirs.eml", serialize(item, "other-hub.fabrikam.test"))
        await wait_for(lambda: len(messages(hub, "alice@contoso.com")) == 2)
        heads = {m.split(b"\r\n\r\n", 1)[0].decode().count("X-MS-Exchange-Organization-Probe: kept"): m
                 for m in messages(hub, "alice@contoso.com")}
        assert set(heads) == {0, 1}
        trusted = heads[1].decode()
        assert trusted.count("X-MS-Exchange-Organization-AuthAs") == 1 and "AuthAs: Internal" in trusted
        assert "AuthAs: Anonymous" in heads[0].decode()


async def test_bad_replay_files_go_to_badmail_with_the_reason(tmp_path: Path) -> None:
    async with running_hub(tmp_path, FAST) as hub:
        drop_file(replay_dir(hub), "plain.eml", b"From: john@fabrikam.test\r\nTo: alice@contoso.com\r\n\r\nBody\r\n")
        await wait_for(lambda: (hub.config.data_root / "badmail" / "plain.bad.txt").exists())
        reason = (hub.config.data_root / "badmail" / "plain.bad.txt").read_text()
        assert "Reason: the file has no X-Sender header before the message" in reason
        rows = await wait_for(lambda: [r for r in tracking(hub) if r["event-id"] == "BADMAIL"])
        assert rows[0]["source"] == "REPLAY"


async def test_a_message_exported_from_the_queue_replays_with_the_same_envelope(tmp_path: Path) -> None:
    """SMTP in with DSN parameters → waits in Unreachable → `transport message export` (refused until the message
    is suspended) → replay."""
    async with running_hub(tmp_path, FAST) as hub:
        smtp = await RawSmtp.connect(hub.addresses[0][1])
        assert (await smtp.cmd("EHLO mail.fabrikam.test")).startswith("250")
        login = base64.b64encode(f"\0alice@contoso.com\0{PASSWORD}".encode()).decode()
        assert (await smtp.cmd(f"AUTH PLAIN {login}")).startswith("235")  # relaying out needs a login
        assert (await smtp.cmd("MAIL FROM:<john@fabrikam.test> BODY=8BITMIME ENVID=env42")).startswith("250")
        rcpt = await smtp.cmd("RCPT TO:<someone@fabrikam.test> NOTIFY=SUCCESS ORCPT=rfc822;x@fabrikam.test")
        assert rcpt.startswith("250")
        assert (await smtp.cmd("DATA")).startswith("354")
        assert (await smtp.cmd("From: john@fabrikam.test\r\nSubject: round trip\r\n\r\nBody\r\n.")).startswith("250")
        await smtp.close()
        first = (await wait_for(lambda: hub.store.items("queue='Unreachable'")))[0]
        original = hub.store.load_message(first.message)
        assert original is not None
        cfg, exported = str(tmp_path / "transport.yaml"), tmp_path / "exported.eml"
        refused = await asyncio.to_thread(run_cli, "message", "export", str(first.message), "--path", str(exported),
                                          "-c", cfg)
        assert refused.returncode == 1 and "suspend message" in refused.stderr and not exported.exists()
        for args in (("suspend", str(first.message)), ("export", str(first.message), "--path", str(exported))):
            done = await asyncio.to_thread(run_cli, "message", *args, "-c", cfg)
            assert done.returncode == 0, done.stderr
        drop_file(replay_dir(hub), "again.eml", exported.read_bytes())
        both = await wait_for(lambda: (lambda items: items if len(items) == 2 else None)(
            hub.store.items("queue='Unreachable'")))
        replayed = hub.store.load_message(both[1].message)
        assert replayed is not None and replayed.source is Source.REPLAY
        assert (replayed.sender, replayed.mail_params) == (original.sender, original.mail_params)
        assert [(r.address, r.params) for r in replayed.recipients] == [
            (r.address, r.params) for r in original.recipients]
        assert replayed.raw.endswith(original.raw)
        assert replayed.raw.startswith(b"Received: from hub.contoso.com by Replay")
        assert (replayed.session.client_ip, replayed.session.helo) == (
            original.session.client_ip, original.session.helo)
        assert created_by(hub.config.receive.fqdn) == "MSExchange15 (hub.contoso.com)"
