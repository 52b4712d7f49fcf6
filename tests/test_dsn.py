"""Delivery status notifications: NDRs for recipients the categorizer fails, NOTIFY, RET, ENVID, ORCPT, the
null sender, reports about reports, and the DSN parameters' syntax at MAIL and RCPT."""

from __future__ import annotations

from dsntools import report_parts, send_dsn
from hubtools import RawSmtp, make_message, messages, running_hub, scheduler_ticks, tracking, wait_for


def _rows(hub, event: str) -> list[dict]:
    return [r for r in tracking(hub) if r["event-id"] == event]


async def test_unknown_recipient_gets_an_ndr_in_the_senders_mailbox(tmp_path):
    async with running_hub(tmp_path) as hub:
        port = hub.addresses[0][1]
        msg = make_message(subject="Quarterly numbers", message_id="<q1@contoso.com>", sender="bob@contoso.com",
                           to="nobody@contoso.com")
        await send_dsn(port, "bob@contoso.com", {"nobody@contoso.com": ["NOTIFY=FAILURE,DELAY",
                                                                         "ORCPT=rfc822;Nobody@contoso.com"],
                                                  "alice@contoso.com": []},
                       msg, mail_options=["RET=FULL", "ENVID=QQ314159"])
        [raw] = await wait_for(lambda: messages(hub, "bob@contoso.com"))
        assert await hub.idle()
    report, human, groups, original = report_parts(raw)
    assert report["From"] == "Postmaster <postmaster@contoso.com>"
    assert report["To"] == "<bob@contoso.com>"
    assert report["Subject"] == "Undeliverable: Quarterly numbers"
    assert report["In-Reply-To"] == "<q1@contoso.com>"
    assert report["Auto-Submitted"] == "auto-replied"
    assert report["Return-Path"] == "<>"
    assert "Delivery has failed to these recipients or groups:" in human.get_payload()
    assert "nobody@contoso.com" in human.get_payload()
    per_message, *per_recipient = groups
    assert per_message["Reporting-MTA"] == "dns;hub.contoso.com"
    assert per_message["Original-Envelope-Id"] == "QQ314159"
    assert per_message["Arrival-Date"]
    [nobody] = per_recipient  # alice was delivered: she is not in the report
    assert nobody["Final-Recipient"] == "rfc822;nobody@contoso.com"
    assert nobody["Original-Recipient"] == "rfc822;Nobody@contoso.com"
    assert nobody["Action"] == "failed"
    assert nobody["Status"] == "5.1.1"
    assert nobody["Diagnostic-Code"] == "smtp;550 5.1.1 RESOLVER.ADR.ExRecipNotFound; not found"
    assert original.get_content_type() == "message/rfc822"
    [returned] = original.get_payload()
    assert returned["Subject"] == "Quarterly numbers" and returned.get_payload() == "Hi there.\r\n"
    rows = tracking(hub)
    dsn = [r for r in rows if r["event-id"] == "DSN"]
    assert len(dsn) == 1 and dsn[0]["message-id"] == "<q1@contoso.com>"
    assert dsn[0]["recipient-address"] == "nobody@contoso.com"
    assert dsn[0]["reference"] == report["Message-ID"]
    assert any(r["event-id"] == "RECEIVE" and r["source"] == "DSN" for r in rows)


async def test_ret_hdrs_returns_the_headers_only(tmp_path):
    async with running_hub(tmp_path) as hub:
        await send_dsn(hub.addresses[0][1], "bob@contoso.com", {"nobody@contoso.com": []},
                       make_message(sender="bob@contoso.com", to="nobody@contoso.com"), mail_options=["RET=HDRS"])
        [raw] = await wait_for(lambda: messages(hub, "bob@contoso.com"))
    _, _, groups, original = report_parts(raw)
    assert original.get_content_type() == "text/rfc822-headers"
    assert "Subject: Hello" in original.get_payload() and "Hi there." not in original.get_payload()
    assert "Original-Envelope-Id" not in groups[0]  # none was given
    assert "Original-Recipient" not in groups[1]


async def test_notify_never_and_success_only_get_no_ndr(tmp_path):
    async with running_hub(tmp_path) as hub:
        port = hub.addresses[0][1]
        await send_dsn(port, "bob@contoso.com", {"nobody@contoso.com": ["NOTIFY=NEVER"]},
                       make_message(message_id="<never@t>", sender="bob@contoso.com"))
        await send_dsn(port, "bob@contoso.com", {"nobody@contoso.com": ["NOTIFY=SUCCESS"]},
                       make_message(message_id="<success@t>", sender="bob@contoso.com"))
        await wait_for(lambda: len(_rows(hub, "FAIL")) == 2)
        assert await hub.idle()
        await scheduler_ticks(hub)
        assert await hub.idle()
        assert messages(hub, "bob@contoso.com") == []
        assert _rows(hub, "DSN") == []


async def test_null_sender_is_never_bounced(tmp_path):
    async with running_hub(tmp_path) as hub:
        await send_dsn(hub.addresses[0][1], "", {"nobody@contoso.com": [], "alice@contoso.com": []},
                       make_message(message_id="<null@t>"))
        await wait_for(lambda: _rows(hub, "FAIL") and messages(hub, "alice@contoso.com"))
        assert await hub.idle()
        await scheduler_ticks(hub)
        assert await hub.idle()
        assert _rows(hub, "DSN") == []
        assert [r["source"] for r in _rows(hub, "RECEIVE")] == ["SMTP"]


async def test_success_notice_for_notify_success_on_mailbox_delivery(tmp_path):
    async with running_hub(tmp_path) as hub:
        await send_dsn(hub.addresses[0][1], "bob@contoso.com", {"alice@contoso.com": ["NOTIFY=SUCCESS"]},
                       make_message(subject="Lunch", sender="bob@contoso.com"), mail_options=["ENVID=lunch-1"])
        [raw] = await wait_for(lambda: messages(hub, "bob@contoso.com"))
    report, _, groups, original = report_parts(raw)
    assert report["Subject"] == "Delivered: Lunch"
    assert groups[0]["Original-Envelope-Id"] == "lunch-1"
    assert groups[1]["Action"] == "delivered" and groups[1]["Status"] == "2.0.0"
    assert original.get_content_type() == "text/rfc822-headers"  # no RET=FULL: headers only


async def test_dsn_parameters_are_checked_at_mail_and_rcpt(tmp_path):
    async with running_hub(tmp_path) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1])
        assert "250-DSN" in await c.cmd("EHLO client.fabrikam.test")
        assert (await c.cmd("MAIL FROM:<bob@contoso.com> RET=SOME")).startswith("501 5.5.4 Invalid RET")
        assert (await c.cmd("MAIL FROM:<bob@contoso.com> RET=HDRS ENVID=x1")).startswith("250")
        assert (await c.cmd("RCPT TO:<alice@contoso.com> NOTIFY=NEVER,SUCCESS")).startswith("501 5.5.4 Invalid NOTIFY")
        assert (await c.cmd("RCPT TO:<alice@contoso.com> NOTIFY=sometimes")).startswith("501 5.5.4 Invalid NOTIFY")
        assert (await c.cmd("RCPT TO:<alice@contoso.com> ORCPT=alice")).startswith("501 5.5.4 Invalid ORCPT")
        assert (await c.cmd("RCPT TO:<alice@contoso.com> NOTIFY=success,delay ORCPT=rfc822;a@contoso.com")).startswith("250")
        await c.close()


def test_a_report_is_never_answered_by_a_report():
    from transport.core.mailitem import MailItem, Recipient
    from transport.dsn import is_report

    report = MailItem("someone@contoso.com", [Recipient("x@contoso.com")],
                      b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n')
    assert is_report(report)
    assert is_report(MailItem("", [Recipient("x@contoso.com")], b"Subject: x\r\n\r\n"))
    assert not is_report(MailItem("a@contoso.com", [Recipient("x@contoso.com")], b"Subject: x\r\n\r\n"))
