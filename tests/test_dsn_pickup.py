"""NDRs from the Pickup directory: for a file moved to badmail (with `badmail_ndr`), and for recipients the
receive agents refuse."""

from __future__ import annotations

from dsntools import report_parts
from hubtools import agent, directory_scans, drop_file, messages, running_hub, tracking, wait_for

MANY = (b"From: bob@contoso.com\r\nTo: a@contoso.com, b@contoso.com, c@contoso.com, d@contoso.com\r\n"
        b"Subject: Too many\r\nMessage-ID: <many@contoso.com>\r\n\r\nHello\r\n")


async def test_badmail_ndr_when_configured(tmp_path):
    extra = {"pickup": {"poll_interval": 0.05, "max_recipients_per_message": 3, "badmail_ndr": True}}
    async with running_hub(tmp_path, extra) as hub:
        drop_file(hub.config.data_root / "pickup", "many.eml", MANY)
        [raw] = await wait_for(lambda: messages(hub, "bob@contoso.com"))
        assert await hub.idle()
    assert (hub.config.data_root / "badmail" / "many.bad").exists()
    report, _, groups, original = report_parts(raw)
    assert report["Subject"] == "Undeliverable: Too many"
    assert [g["Final-Recipient"] for g in groups[1:]] == [f"rfc822;{x}@contoso.com" for x in "abcd"]
    assert {g["Status"] for g in groups[1:]} == {"5.6.0"}
    assert "over PickupDirectoryMaxRecipientsPerMessage (3)" in groups[1]["Diagnostic-Code"]
    assert original.get_payload()[0]["Message-ID"] == "<many@contoso.com>"


async def test_no_badmail_ndr_by_default(tmp_path):
    async with running_hub(tmp_path, {"pickup": {"poll_interval": 0.05, "max_recipients_per_message": 3}}) as hub:
        drop_file(hub.config.data_root / "pickup", "many.eml", MANY)
        await wait_for(lambda: (hub.config.data_root / "badmail" / "many.bad").exists())
        await directory_scans(hub)
        assert await hub.idle()
        assert messages(hub, "bob@contoso.com") == []
        assert not [r for r in tracking(hub) if r["event-id"] == "DSN"]


async def test_a_recipient_an_agent_refuses_gets_an_ndr(tmp_path):
    extra = {"pickup": {"poll_interval": 0.05},
             "agents": [agent("test_pickup:SessionRecorder")]}  # refuses blocked@… at RCPT TO
    msg = (b"From: bob@contoso.com\r\nTo: alice@contoso.com, blocked@fabrikam.test\r\nSubject: Two\r\n"
           b"Message-ID: <two@contoso.com>\r\n\r\nHello\r\n")
    async with running_hub(tmp_path, extra) as hub:
        drop_file(hub.config.data_root / "pickup", "two.eml", msg)
        [raw] = await wait_for(lambda: messages(hub, "bob@contoso.com"))
        assert await hub.idle()
        assert len(messages(hub, "alice@contoso.com")) == 1
    _, _, groups, _ = report_parts(raw)
    assert [g["Final-Recipient"] for g in groups[1:]] == ["rfc822;blocked@fabrikam.test"]
    assert groups[1]["Diagnostic-Code"] == "smtp;550 5.7.1 Recipient blocked by test"
