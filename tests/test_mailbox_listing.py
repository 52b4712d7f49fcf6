"""`transport mailbox list`: what each folder holds (date, from, subject, SCL, Sender ID), as text and JSON."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from hubtools import agent, make_message, messages, running_hub, send
from transport.cli import main
from transport.core.errors import AdminError
from transport.mailbox_listing import MailboxFolder, list_folder

SCL = {"agents": [agent("hubtools:StampScl", scl=1)]}


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = await asyncio.to_thread(main, list(argv))
    return code, capsys.readouterr().out


async def test_list_shows_inbox_and_junk_with_their_stamps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with running_hub(tmp_path, SCL) as hub:
        port = hub.addresses[0][1]
        await send(port, "john@fabrikam.test", ["alice@contoso.com"], make_message("Lunch?", "<a@fabrikam.test>",
                   sender="John Doe <john@fabrikam.test>"))
        await send(port, "john@fabrikam.test", ["alice@contoso.com"], make_message(
            "=?utf-8?q?Caf=C3=A9?=", "<b@fabrikam.test>", extra_headers="X-Test-SCL: 8\r\n"))
        assert await hub.idle()
        root = hub.config.data_root / "mailboxes"
        inbox = list_folder(root, "Alice@Contoso.com", MailboxFolder.INBOX)
        junk = list_folder(root, "alice@contoso.com", MailboxFolder.JUNK)
        assert [(m.subject, m.sender, m.scl) for m in inbox] == [("Lunch?", "John Doe <john@fabrikam.test>", 1)]
        assert [(m.subject, m.scl) for m in junk] == [("Café", 8)]
        assert inbox[0].size == len(messages(hub, "alice@contoso.com")[0])
        assert list_folder(root, "alice@contoso.com", MailboxFolder.SENT_ITEMS) == []

        code, out = await run(capsys, "mailbox", "list", "alice@contoso.com", "--folder", "Junk", "--json",
                              "-c", str(tmp_path / "transport.yaml"))
        assert code == 0
        rows = json.loads(out)
        assert [(r["subject"], r["from"], r["scl"], r["sender_id"]) for r in rows] == [
            ("Café", "john@fabrikam.test", 8, "")]
        code, out = await run(capsys, "mailbox", "list", "alice@contoso.com", "-c", str(tmp_path / "transport.yaml"))
        assert code == 0 and "Lunch?" in out and out.splitlines()[0].split()[:4] == ["date", "from", "subject", "scl"]


def test_an_unknown_mailbox_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(AdminError, match="no mailbox nobody@contoso.com"):
        list_folder(tmp_path, "nobody@contoso.com", MailboxFolder.INBOX)
    from hubtools import write_config

    code = main(["mailbox", "list", "nobody@contoso.com", "-c", str(write_config(tmp_path))])
    captured = capsys.readouterr()
    assert code != 0 and "nobody@contoso.com is not a mailbox" in captured.err


def test_a_message_without_a_date_is_listed_at_its_arrival(tmp_path: Path) -> None:
    """As a mail client shows it: no Date header (or one that does not parse) → when the copy was written."""
    new = tmp_path / "alice@contoso.com" / "new"
    new.mkdir(parents=True)
    for name, date in (("1.M1I1.host", ""), ("2.M1I2.host", "Date: not a date\r\n"),
                       ("3.M1I3.host", "Date: Tue, 01 Dec 2026 10:00:00 +0100\r\n")):
        (new / name).write_bytes(f"From: a@b.example\r\nSubject: s\r\n{date}\r\nbody\r\n".encode())
        os.utime(new / name, (1_700_000_000, 1_700_000_000))
    dates = [m.date for m in list_folder(tmp_path, "alice@contoso.com", MailboxFolder.INBOX)]
    assert dates == ["2023-11-14T22:13:20+00:00", "2023-11-14T22:13:20+00:00", "2026-12-01T10:00:00+01:00"]
