"""The store driver: a mailbox's Outbox is sent as that mailbox and kept in Sent Items; Send As and Send on
Behalf decide what From a user may write, from the Outbox and over authenticated SMTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hubtools import (PASSWORD, directory_scans, drop_file, header_value, maildir, messages, running_hub, send,
                      tracking, wait_for)
from transport.core.config import ConfigError, load_config
from transport.mailbox_listing import MailboxFolder, list_folder

FAST = {"store_driver": {"poll_interval": 0.05}}


def outbox(hub: Any, address: str) -> Path:
    return maildir(hub, address, ".Outbox") / "new"


def sent_items(hub: Any, address: str) -> list[bytes]:
    cur = maildir(hub, address, ".Sent Items") / "cur"
    return [p.read_bytes() for p in sorted(cur.iterdir())] if cur.is_dir() else []


def grants(**mailboxes: dict[str, list[str]]) -> dict[str, Any]:
    """The test mailboxes with Send As / Send on Behalf grants, e.g. bob={"send_as": ["alice@contoso.com"]}."""
    boxes = [{"address": "alice@contoso.com", "display_name": "Alice Wilson", "password": PASSWORD},
             {"address": "bob@contoso.com", "display_name": "Bob Kelly", "password": PASSWORD},
             {"address": "carol@contoso.com", "display_name": "Carol"}]
    for box in boxes:
        box.update(mailboxes.get(box["address"].split("@")[0], {}))
    return FAST | {"mailboxes": boxes}


def eml(*headers: str, body: str = "Hello\r\n") -> bytes:
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


async def test_outbox_is_sent_as_the_mailbox_and_kept_in_sent_items_with_bcc(tmp_path: Path) -> None:
    async with running_hub(tmp_path, FAST) as hub:
        drop_file(outbox(hub, "alice@contoso.com"), "1.M1P1.client", eml(
            "From: Alice Wilson <alice@contoso.com>", "To: bob@contoso.com", "Bcc: carol@contoso.com",
            "Subject: lunch"))
        await wait_for(lambda: messages(hub, "bob@contoso.com") and messages(hub, "carol@contoso.com"))
        await wait_for(lambda: sent_items(hub, "alice@contoso.com"))
        assert await hub.idle()
        [bob] = messages(hub, "bob@contoso.com")
        [kept] = sent_items(hub, "alice@contoso.com")
        assert header_value(bob, "Bcc") is None and header_value(messages(hub, "carol@contoso.com")[0], "Bcc") is None
        assert header_value(kept, "Bcc") == "carol@contoso.com"
        message_id = header_value(bob, "Message-ID")
        assert message_id and header_value(kept, "Message-ID") == message_id and header_value(bob, "Date")
        assert header_value(bob, "X-MS-Exchange-Organization-AuthAs") == "Internal"
        assert list(outbox(hub, "alice@contoso.com").iterdir()) == []
        [receive] = [r for r in tracking(hub) if r["event-id"] == "RECEIVE"]
        assert (receive["source"], receive["sender-address"], receive["source-context"]) == (
            "STOREDRIVER", "alice@contoso.com", "1.M1P1.client")
        assert sorted(receive["recipient-address"].split(";")) == ["bob@contoso.com", "carol@contoso.com"]
        [listed] = list_folder(hub.config.data_root / "mailboxes", "alice@contoso.com", MailboxFolder.SENT_ITEMS)
        assert (listed.subject, listed.sender) == ("lunch", "Alice Wilson <alice@contoso.com>")


async def test_a_message_without_from_gets_the_mailbox(tmp_path: Path) -> None:
    async with running_hub(tmp_path, FAST) as hub:
        drop_file(outbox(hub, "alice@contoso.com"), "draft", eml("To: bob@contoso.com", "Subject: quick"))
        [bob] = await wait_for(lambda: messages(hub, "bob@contoso.com"))
        assert header_value(bob, "From") == "Alice Wilson <alice@contoso.com>"


async def test_send_as_granted_keeps_from(tmp_path: Path) -> None:
    async with running_hub(tmp_path, grants(bob={"send_as": ["alice@contoso.com"]})) as hub:
        drop_file(outbox(hub, "alice@contoso.com"), "m", eml("From: bob@contoso.com", "To: carol@contoso.com"))
        [carol] = await wait_for(lambda: messages(hub, "carol@contoso.com"))
        assert header_value(carol, "From") == "bob@contoso.com" and header_value(carol, "Sender") is None
        assert header_value(carol, "Return-Path") == "<alice@contoso.com>"


async def test_send_as_denied_fails_every_recipient_with_an_ndr_to_the_mailbox(tmp_path: Path) -> None:
    async with running_hub(tmp_path, grants(bob={"send_on_behalf": ["carol@contoso.com"]})) as hub:
        drop_file(outbox(hub, "alice@contoso.com"), "m", eml("From: bob@contoso.com", "To: carol@contoso.com"))
        await wait_for(lambda: sent_items(hub, "alice@contoso.com"))
        assert await hub.idle()
        await directory_scans(hub)
        assert messages(hub, "carol@contoso.com") == []
        fails = [r for r in tracking(hub) if r["event-id"] == "FAIL"]
        assert fails and all(r["recipient-status"].startswith(
            "554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied") for r in fails)
        assert [(r["source"], r["recipient-address"]) for r in fails] == [("STOREDRIVER", "carol@contoso.com")]
        [ndr] = await wait_for(lambda: messages(hub, "alice@contoso.com"))  # the NDR goes to the mailbox that sent
        assert await hub.idle()  # the file shows in new/ before its DELIVER row is written
        assert b"SendAsDeniedException.MapiExceptionSendAsDenied" in ndr and header_value(ndr, "Return-Path") == "<>"
        assert [r["recipient-address"] for r in tracking(hub) if r["event-id"] == "DELIVER"] == ["alice@contoso.com"]


async def test_send_on_behalf_stamps_sender(tmp_path: Path) -> None:
    async with running_hub(tmp_path, grants(bob={"send_on_behalf": ["alice@contoso.com"]})) as hub:
        drop_file(outbox(hub, "alice@contoso.com"), "m", eml("From: Bob Kelly <bob@contoso.com>", "To: carol@contoso.com"))
        [carol] = await wait_for(lambda: messages(hub, "carol@contoso.com"))
        assert header_value(carol, "From") == "Bob Kelly <bob@contoso.com>"
        assert header_value(carol, "Sender") == "alice@contoso.com"
        [kept] = await wait_for(lambda: sent_items(hub, "alice@contoso.com"))
        assert header_value(kept, "Sender") == "alice@contoso.com"


async def test_auth_user_with_a_foreign_from_is_refused_at_end_of_data(tmp_path: Path) -> None:
    async with running_hub(tmp_path, grants(bob={"send_as": ["alice@contoso.com"]})) as hub:
        port, login = hub.addresses[0][1], ("alice@contoso.com", PASSWORD)
        _, reply = await send(port, "alice@contoso.com", ["bob@contoso.com"],
                              eml("From: carol@contoso.com", "To: bob@contoso.com", "Subject: as carol"), login=login)
        assert reply == (550, b"5.7.60 SMTP; Client does not have permissions to send as this sender")
        for subject, sender in (("as alice", "alice@contoso.com"), ("as bob", "Bob Kelly <bob@contoso.com>")):
            _, reply = await send(port, "alice@contoso.com", ["carol@contoso.com"],
                                  eml(f"From: {sender}", "To: carol@contoso.com", f"Subject: {subject}"), login=login)
            assert reply[0] == 250
        received = await wait_for(lambda: len(messages(hub, "carol@contoso.com")) == 2 and messages(hub, "carol@contoso.com"))
        assert sorted(header_value(m, "Subject") for m in received) == ["as alice", "as bob"]
        assert messages(hub, "bob@contoso.com") == []
        fails = [r for r in tracking(hub) if r["event-id"] == "FAIL"]
        assert [(r["source"], r["message-subject"]) for r in fails] == [("SMTP", "as carol")]


async def test_auth_user_with_send_on_behalf_gets_sender(tmp_path: Path) -> None:
    async with running_hub(tmp_path, grants(carol={"send_on_behalf": ["alice@contoso.com"]})) as hub:
        _, reply = await send(hub.addresses[0][1], "alice@contoso.com", ["bob@contoso.com"],
                              eml("From: carol@contoso.com", "To: bob@contoso.com"), login=("alice@contoso.com", PASSWORD))
        assert reply[0] == 250
        [bob] = await wait_for(lambda: messages(hub, "bob@contoso.com"))
        assert (header_value(bob, "From"), header_value(bob, "Sender")) == ("carol@contoso.com", "alice@contoso.com")


async def test_anonymous_mail_with_a_mailbox_in_from_is_not_a_send_as_question(tmp_path: Path) -> None:
    async with running_hub(tmp_path, FAST) as hub:
        _, reply = await send(hub.addresses[0][1], "bob@contoso.com", ["carol@contoso.com"],
                              eml("From: bob@contoso.com", "To: carol@contoso.com"))
        assert reply[0] == 250


async def test_a_file_that_is_no_message_goes_to_badmail_named_for_the_mailbox(tmp_path: Path) -> None:
    async with running_hub(tmp_path, FAST) as hub:
        drop_file(outbox(hub, "alice@contoso.com"), "notes.txt", b"just some words, no header\r\n")
        [row] = await wait_for(lambda: [r for r in tracking(hub) if r["event-id"] == "BADMAIL"])
        assert (row["source"], row["sender-address"], row["source-context"]) == ("STOREDRIVER", "alice@contoso.com",
                                                                                "notes.txt")
        assert "does not start with a header field" in row["recipient-status"]
        assert (hub.config.data_root / "badmail" / "notes.txt.bad").exists()
        assert sent_items(hub, "alice@contoso.com") == [] and list(outbox(hub, "alice@contoso.com").iterdir()) == []


async def test_store_driver_off_watches_no_outbox(tmp_path: Path) -> None:
    async with running_hub(tmp_path, {"store_driver": {"path": ""}}) as hub:
        assert hub.outboxes == [] and len(hub.watchers) == 2
        drop_file(outbox(hub, "alice@contoso.com"), "m", eml("From: alice@contoso.com", "To: bob@contoso.com"))
        await directory_scans(hub)
        assert list(outbox(hub, "alice@contoso.com").iterdir()) != []


def test_grants_name_mailboxes(tmp_path: Path) -> None:
    from hubtools import write_config

    path = write_config(tmp_path, grants(bob={"send_as": ["mallory@contoso.com"]}))
    with pytest.raises(ConfigError, match=r"mailboxes\.1\.send_as\.0: mallory@contoso.com is not a mailbox"):
        load_config(path)


async def test_mailbox_send_wait_reports_delivered_and_failed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio
    import json

    from transport.cli import main

    good, denied = tmp_path / "good.eml", tmp_path / "denied.eml"
    good.write_bytes(eml("From: alice@contoso.com", "To: bob@contoso.com, carol@contoso.com, fax@fax.contoso.com",
                         "Subject: hi"))
    denied.write_bytes(eml("From: bob@contoso.com", "To: carol@contoso.com", "Subject: as bob"))
    fax = {"send_connectors": [{"name": "Fax", "address_spaces": ["fax.contoso.com"], "drop_directory": "drop/Fax"}]}
    async with running_hub(tmp_path, FAST | fax) as hub:
        config = str(tmp_path / "transport.yaml")
        code = await asyncio.to_thread(main, ["mailbox", "send", "--from", "alice@contoso.com", str(good), str(denied),
                                              "--wait", "--json", "-c", config])
        result = json.loads(capsys.readouterr().out)
        assert code == 1  # one was refused
        assert [(r["file"], r["status"]) for r in result] == [(str(good), "delivered"), (str(denied), "failed")]
        assert sorted(result[0]["delivered"]) == ["bob@contoso.com", "carol@contoso.com", "fax@fax.contoso.com"]  # SEND
        assert result[1]["failed"]["carol@contoso.com"].startswith("554 5.2.0 STOREDRV.Submission.Exception")
        assert len(sent_items(hub, "alice@contoso.com")) == 2  # settled means in Sent Items too
        code = await asyncio.to_thread(main, ["mailbox", "send", "--from", "alice@contoso.com", str(good), "--wait",
                                              "-c", config])
        out = capsys.readouterr().out
        assert code == 0 and "delivered" in out and "bob@contoso.com" in out
        code = await asyncio.to_thread(main, ["mailbox", "send", "--from", "mallory@contoso.com", str(good), "-c", config])
        assert code != 0 and "mallory@contoso.com is not a mailbox" in capsys.readouterr().err


def test_mailbox_send_wait_without_a_hub_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hubtools import write_config
    from transport.cli import main

    message = tmp_path / "m.eml"
    message.write_bytes(eml("From: alice@contoso.com", "To: bob@contoso.com"))
    code = main(["mailbox", "send", "--from", "alice@contoso.com", str(message), "--wait", "--timeout", "0.3",
                 "-c", str(write_config(tmp_path))])
    out = capsys.readouterr().out
    assert code == 1 and "pending" in out and "not taken from the Outbox within 0.3s (is the hub running?)" in out


def test_the_outbox_is_the_mailbox_s_outbox(tmp_path: Path) -> None:
    from hubtools import write_config

    with pytest.raises(ConfigError, match=r"store_driver\.path: .*set \.Outbox, or empty to turn it off"):
        load_config(write_config(tmp_path, {"store_driver": {"path": "Drafts"}}))
