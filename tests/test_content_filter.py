"""The content filter: each rule on a message made for it, each action and threshold over real SMTP, the bypasses,
the stamps, the README's example messages through a hub with the shipped agents, and `content-filter test --json`."""

from __future__ import annotations

import json

import pytest
import yaml

from filtertools import as_client, hub_with, send_raw
from guards import returns_within
from hubtools import PASSWORD, REPO, agent, header_value, make_message, messages, run_cli, running_hub, send, tracking
from agents import MailItem, Recipient, ReverseDns, Stamp
from agents.content_filter import COUNTERS, EXPLANATION_HEADER, ContentFilterConfig
from agents.content_filter.bayes import tokens
from agents.content_filter.message import MessageView
from agents.content_filter.rules import Site, build_rules
from agents.content_filter.scan import scan

CONTENT_FILTER = "agents.content_filter:ContentFilterAgent"
EXAMPLES = REPO / "examples" / "eml"
SCL = "X-MS-Exchange-Organization-SCL"
REPORT = "X-MS-Exchange-Organization-Antispam-Report"
DATE = "Date: Tue, 01 Dec 2026 09:00:00 +0000\r\n"
SITE = Site("hub.contoso.com", ("contoso.com",))


def fired(raw: bytes, stamps: dict | None = None, **config) -> set[str]:
    item = MailItem("x@fabrikam.test", [Recipient("alice@contoso.com")], raw, stamps=dict(stamps or {}))
    rules = build_rules(ContentFilterConfig(**config), SITE)
    return {h.rule for h in scan(rules, MessageView.of(item, raw)).hits}


PLAIN = make_message(extra_headers=DATE)
HTML_LINKS = "".join(f'<a href="https://spam.example/{i}">offer</a>' for i in range(11))


@pytest.mark.parametrize("rule, raw, stamps, config", [
    ("good_phrase", make_message(body="The Contoso\r\n  QUARTERLY report.\r\n", extra_headers=DATE), {},
     {"good_phrases": ["contoso quarterly report"]}),
    ("bad_phrase", make_message(subject="win a free cruise", extra_headers=DATE), {}, {"bad_phrases": ["WIN A FREE CRUISE"]}),
    ("sender_id_fail", PLAIN, {Stamp.SENDER_ID_RESULT: "Fail"}, {}),
    ("sender_id_softfail", PLAIN, {Stamp.SENDER_ID_RESULT: "SoftFail"}, {}),
    ("sender_id_pass", PLAIN, {Stamp.SENDER_ID_RESULT: "Pass"}, {}),
    ("sender_blocked", PLAIN, {Stamp.SENDER_BLOCKED: True}, {}),
    ("reverse_dns_unverified", PLAIN, {Stamp.REVERSE_DNS: ReverseDns.UNVERIFIED.value}, {}),
    ("missing_date", make_message(), {}, {}),
    ("missing_message_id", make_message(message_id=None, extra_headers=DATE), {}, {}),
    ("missing_message_id", make_message(message_id="<abc@hub.contoso.com>", extra_headers=DATE), {}, {}),
    ("reply_to_mismatch", make_message(extra_headers=DATE + "Reply-To: a@elsewhere.example\r\n"), {}, {}),
    ("all_caps_subject", make_message(subject="LAST CHANCE TO BUY", extra_headers=DATE), {}, {}),
    ("html_only", make_message(extra_headers=DATE + "Content-Type: text/html\r\n", body="<p>hi</p>\r\n"), {}, {}),
    ("many_urls", make_message(extra_headers=DATE + "Content-Type: text/html\r\n", body=HTML_LINKS), {}, {}),
    ("suspicious_attachment", make_message(extra_headers=DATE + 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n',
                                           body='--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n'
                                                'Content-Type: application/octet-stream\r\nContent-Disposition: attachment; '
                                                'filename="invoice.pdf.exe"\r\n\r\nMZ\r\n--b--\r\n'), {}, {}),
    ("display_name_impersonation", make_message(sender='"Contoso.com Payroll" <pay@fabrikam.test>', extra_headers=DATE), {}, {}),
    ("link_text_mismatch", make_message(extra_headers=DATE + "Content-Type: text/html\r\n",
                                        body='<a href="http://198.51.100.7/x">www.contoso.com</a>\r\n'), {}, {}),
    ("dns_block_list", PLAIN, {Stamp.DNS_LIST_HITS: ["Soft List"]}, {}),
    # a message that is not multipart is read from the item's header fields: its encoding and disposition count
    ("bad_phrase", make_message(extra_headers=DATE + "Content-Transfer-Encoding: base64\r\n",
                                body="V2luIGEgZnJlZSBjcnVpc2Uh\r\n"), {}, {"bad_phrases": ["win a free cruise"]}),
    ("suspicious_attachment", make_message(extra_headers=DATE + "Content-Type: application/octet-stream\r\n"
                                           'Content-Disposition: attachment; filename="invoice.pdf.exe"\r\n',
                                           body="MZ\r\n"), {}, {}),
])
def test_each_rule_fires_on_its_message_and_not_on_a_plain_one(rule, raw, stamps, config):
    assert rule in fired(raw, stamps, **config)
    assert rule not in fired(PLAIN, {}, **config)


def test_near_misses_do_not_fire():
    assert fired(make_message(subject="Re: OK", extra_headers=DATE + "Reply-To: other@fabrikam.test\r\n")) == set()
    assert "good_phrase" not in fired(make_message(body="contoso quarterly reports\r\n"), good_phrases=["contoso quarterly report"])
    assert "bad_phrase" not in fired(make_message(body="unwin a free cruise, _win a free cruise\r\n"), bad_phrases=["win a free cruise"])
    assert "bad_phrase" in fired(make_message(body="unwin a free cruise, (Win A\r\n Free cruise)\r\n"), bad_phrases=["win a free cruise"])
    assert "display_name_impersonation" not in fired(make_message(sender='"Contoso.com" <it@contoso.com>'))
    same_site = make_message(extra_headers="Content-Type: text/html\r\n",
                             body='<a href="https://www.contoso.com/a">contoso.com</a> <a href="https://x.example">click</a>\r\n')
    assert "link_text_mismatch" not in fired(same_site)
    assert "sender_id_fail" not in fired(PLAIN, {Stamp.SENDER_ID_RESULT: "TempError"})
    assert fired(PLAIN, {Stamp.SENDER_ID_RESULT: "Fail"}, weights={"sender_id_fail": 0}) == set()


def test_a_malformed_link_does_not_stop_the_scan():
    """`http://[oops/` cannot be parsed: the link counts as one without a host, and the other rules still fire."""
    raw = make_message(subject="WIN A FREE CRUISE", extra_headers=DATE + "Content-Type: text/html\r\n",
                       body='<a href="http://[oops/">www.contoso.com</a> <a href="https://x.example">go</a>\r\n')
    assert {"bad_phrase", "html_only"} <= fired(raw, bad_phrases=["win a free cruise"])
    assert tokens(MessageView.of(MailItem("x@fabrikam.test", [], raw), raw)) >= {"url:", "url:x.example"}


def test_links_pair_each_opening_tag_with_the_next_closing_one():
    """An opening tag without an href is no link; an opening tag inside a link's text is part of that text; a
    link never closed is none; tags and entities in a link's text are read as a reader sees them."""
    body = ('<a name="top">Top</a> <A\r\nclass=x HREF=https://a.example/1>one <b>&amp;</b> <a href="https://b.example">'
            "two</a > <a href='https://c.example'>three</A> <a href=https://d.example>never closed")
    raw = make_message(extra_headers=DATE + "Content-Type: text/html\r\n", body=body + "\r\n")
    view = MessageView.of(MailItem("x@fabrikam.test", [], raw), raw)
    assert view.links == [("https://a.example/1", "one & two"), ("https://c.example", "three")]
    assert view.urls == {"https://a.example/1", "https://b.example", "https://c.example", "https://d.example"}
    assert "never closed" in view.text and "<" not in view.text


def test_parts_nested_past_the_parsers_depth_are_read_as_one_text():
    """3,000 nested multiparts (180 KB) made the standard library's MIME parser recurse past Python's limit: the
    content filter raised and the message went in unscanned. Now its body is read as one plain text."""
    body = "".join(f"--b{i}\r\nContent-Type: multipart/mixed; boundary=b{i + 1}\r\n\r\n" for i in range(3000))
    raw = make_message(subject="Hi", body=body + "--b3000\r\nContent-Type: text/plain\r\n\r\nWIN A FREE CRUISE\r\n",
                       extra_headers=DATE + "Content-Type: multipart/mixed; boundary=b0\r\n")
    assert "bad_phrase" in fired(raw, bad_phrases=["win a free cruise"])


HOSTILE_MARKUP = {
    "openings without end": "<a href=" * 200_000,    # 16 KB of it took the old patterns 26 s: cubic
    "links never closed": "<a href=x>" * 200_000,
    "brackets": "<" * 1_000_000,
    "closings without openings": "</a " * 200_000,
}


@pytest.mark.parametrize("markup", HOSTILE_MARKUP.values(), ids=HOSTILE_MARKUP.keys())
def test_hostile_markup_is_read_in_one_pass(markup):
    """Markup a spammer can send (MBs of it, under the default max_scan_size) is scanned in time proportional to
    its length: no pattern rescans the rest of the message at every "<". The guard only catches a hang."""
    raw = make_message(extra_headers=DATE + "Content-Type: text/html\r\n", body=markup + "\r\n")
    view = returns_within(60, MessageView.of, MailItem("x@fabrikam.test", [], raw), raw)
    assert view.has_html and view.links == []


def test_good_phrase_wins_and_score_maps_to_scl():
    rules = build_rules(ContentFilterConfig(good_phrases=["hello"], bad_phrases=["cruise"]), SITE)
    both = make_message(subject="hello cruise", extra_headers=DATE)
    assert scan(rules, MessageView.of(MailItem("", [], both), both)).scl == 0
    shouting = make_message(subject="LAST CHANCE TO BUY", message_id=None)  # 1.5 + 1 + 1 = 3.5 → 4
    result = scan(rules, MessageView.of(MailItem("", [], shouting), shouting))
    assert (result.score, result.scl) == (3.5, 4)


# -- over SMTP -----------------------------------------------------------------------------------------------

SPAMMY = make_message(subject="LAST CHANCE TO BUY", message_id="<s1@fabrikam.test>",  # 1.5 + 1 + 1 + 1.5 = 5
                      extra_headers="Content-Type: text/html\r\n", body=HTML_LINKS + "\r\n")


def cf(**config) -> dict:
    return {"agents": [agent(CONTENT_FILTER, 6, bad_phrases=["WIN A FREE CRUISE"], **config)]}


async def deliver(hub, body: bytes, rcpts=("alice@contoso.com",), **kw):
    return await send(hub.addresses[0][1], "x@fabrikam.test", list(rcpts), body, **kw)


async def test_reject_threshold_and_counters(tmp_path):
    async with running_hub(tmp_path, cf()) as hub:
        _, reply = await deliver(hub, make_message(body="WIN A FREE CRUISE\r\n", extra_headers=DATE))
        assert reply == (550, b"5.7.1 Message rejected due to content restrictions")
        _, reply = await deliver(hub, SPAMMY)
        assert reply[0] == 250
        assert await hub.idle()
        assert hub.counters.get(COUNTERS, "Messages Rejected") == 1
        assert hub.counters.get(COUNTERS, "Messages Scanned") == 2
        assert hub.counters.get(COUNTERS, "Messages with SCL 9") == 1
        assert hub.counters.get(COUNTERS, "Messages with SCL 5") == 1
        info = [r["custom-data"] for r in tracking(hub) if r["event-id"] == "AGENTINFO"]
        assert any(d.startswith("Content Filter Agent: SCL 9") and "bad_phrase SCL 9" in d for d in info)


async def test_a_message_of_hostile_markup_gets_its_answer(tmp_path):
    """1.6 MB of `<a href=` (well under max_scan_size) once held a receive worker's event loop for over 30 s,
    until the hub killed it as hung: now it is scanned like any message, and the next one is answered too."""
    async with running_hub(tmp_path, cf()) as hub:
        bomb = make_message(extra_headers=DATE + "Content-Type: text/html\r\n", body="<a href=" * 200_000 + "\r\n")
        _, reply = await deliver(hub, bomb)
        assert reply[0] == 250
        _, reply = await deliver(hub, PLAIN)
        assert reply[0] == 250
        assert await hub.idle()
        assert hub.counters.get(COUNTERS, "Messages Scanned") == 2


async def test_a_from_field_of_nested_comments_is_scanned_not_skipped(tmp_path):
    """`From: ((((…` made the standard library's address parser recurse past Python's limit: the content filter
    raised, failed open, and the message went in unscanned. Now that From holds no address, and the scan goes on."""
    async with running_hub(tmp_path, cf()) as hub:
        raw = make_message(sender="(" * 5000, body="WIN A FREE CRUISE\r\n", extra_headers=DATE)
        _, reply = await deliver(hub, raw)
        assert reply == (550, b"5.7.1 Message rejected due to content restrictions")
        assert [la.errors for la in hub.pipeline.agents] == [0]


async def test_lower_reject_threshold_rejects_scl_5(tmp_path):
    async with running_hub(tmp_path, cf(scl_reject_threshold=5)) as hub:
        _, reply = await deliver(hub, SPAMMY)
        assert reply[0] == 550


async def test_delete_gets_the_fake_250_and_nothing_is_delivered(tmp_path):
    async with running_hub(tmp_path, cf(scl_delete_enabled=True)) as hub:
        _, reply = await deliver(hub, make_message(body="win a free cruise\r\n", extra_headers=DATE))
        assert reply[0] == 250 and b"2.6.0" in reply[1] and b"InternalId" not in reply[1]
        assert await hub.idle()
        assert messages(hub, "alice@contoso.com") == [] and messages(hub, "alice@contoso.com", ".Junk") == []
        assert hub.counters.get(COUNTERS, "Messages Deleted") == 1


async def test_reject_off_lets_scl_9_into_junk(tmp_path):
    async with running_hub(tmp_path, cf(scl_reject_enabled=False)) as hub:
        _, reply = await deliver(hub, make_message(body="WIN A FREE CRUISE\r\n", extra_headers=DATE))
        assert reply[0] == 250
        assert await hub.idle()
        [raw] = messages(hub, "alice@contoso.com", ".Junk")
        assert header_value(raw, SCL) == "9"


async def test_junk_threshold_stamps_and_explanation(tmp_path):
    async with running_hub(tmp_path, cf()) as hub:
        await deliver(hub, SPAMMY, rcpts=("alice@contoso.com", "carol@contoso.com"))  # carol's junk threshold is 8
        await deliver(hub, PLAIN)
        assert await hub.idle()
        [junk] = messages(hub, "alice@contoso.com", ".Junk")
        assert len(messages(hub, "carol@contoso.com")) == 1 and messages(hub, "carol@contoso.com", ".Junk") == []
        assert header_value(junk, SCL) == "5"
        explanation = header_value(junk, EXPLANATION_HEADER)
        assert explanation.startswith("SCL 5 (score 5): ")
        for rule in ("all_caps_subject +1.5", "missing_date +1", "html_only +1", "many_urls +1.5 (11 links)"):
            assert rule in explanation
        assert "sender_id" not in explanation
        assert header_value(junk, REPORT) == "DV:1.0;OrigIP:127.0.0.1"
        [inbox] = messages(hub, "alice@contoso.com")
        assert header_value(inbox, SCL) == "0"
        assert header_value(inbox, EXPLANATION_HEADER) == "SCL 0 (score 0): no rule fired"


async def test_authenticated_session_gets_scl_minus_1(tmp_path):
    async with running_hub(tmp_path, cf()) as hub:
        await deliver(hub, make_message(body="WIN A FREE CRUISE\r\n"), login=("alice@contoso.com", PASSWORD))
        assert await hub.idle()
        [raw] = messages(hub, "alice@contoso.com")
        assert header_value(raw, SCL) == "-1"
        assert header_value(raw, REPORT).startswith("MessageSecurityAntispamBypass;OrigIP:")
        assert header_value(raw, EXPLANATION_HEADER) is None


@pytest.mark.parametrize("config, word", [
    ({"bypassed_senders": ["X@fabrikam.test"]}, "ContentFilterConfigBypassedSender"),
    ({"bypassed_sender_domains": ["*.test"]}, "ContentFilterConfigBypassedSender"),
    ({"bypassed_recipients": ["alice@contoso.com"]}, "ContentFilterConfigBypassedRecipient"),
])
async def test_bypass_lists(tmp_path, config, word):
    async with running_hub(tmp_path, cf(**config)) as hub:
        _, reply = await deliver(hub, make_message(body="WIN A FREE CRUISE\r\n"))
        assert reply[0] == 250
        assert await hub.idle()
        [raw] = messages(hub, "alice@contoso.com")
        assert header_value(raw, SCL) == "-1" and header_value(raw, REPORT) == f"{word};OrigIP:127.0.0.1"
        assert hub.counters.get(COUNTERS, "Messages that Bypassed Scanning") == 1


async def test_rejected_but_bypassed_recipient_still_gets_it(tmp_path):
    async with running_hub(tmp_path, cf(bypassed_recipients=["bob@contoso.com"])) as hub:
        _, reply = await deliver(hub, make_message(body="WIN A FREE CRUISE\r\n"), rcpts=("alice@contoso.com", "bob@contoso.com"))
        assert reply[0] == 250
        assert await hub.idle()
        assert len(messages(hub, "bob@contoso.com", ".Junk")) == 1 and messages(hub, "alice@contoso.com") == []
        fails = [r for r in tracking(hub) if r["event-id"] == "FAIL"]
        assert fails[0]["recipient-address"] == "alice@contoso.com"
        assert fails[0]["recipient-status"] == "550 5.7.1 Message rejected due to content restrictions"


async def test_scl_from_a_trusted_source_is_kept_and_an_anonymous_one_is_not(tmp_path):
    preset = make_message(body="WIN A FREE CRUISE\r\n", extra_headers=f"{SCL}: 3\r\n")
    async with running_hub(tmp_path, cf() | {"internal_smtp_servers": ["127.0.0.0/8"]}) as hub:
        _, reply = await deliver(hub, preset)
        assert reply[0] == 250
        assert await hub.idle()
        [raw] = messages(hub, "alice@contoso.com")
        assert header_value(raw, SCL) == "3"
        assert hub.counters.get(COUNTERS, "Messages with a Preexisting SCL") == 1
    (tmp_path / "anon").mkdir()
    async with running_hub(tmp_path / "anon", cf()) as hub:
        _, reply = await deliver(hub, preset)
        assert reply[0] == 550  # the header firewall dropped the sender's SCL; the bad phrase decides


async def test_internal_server_gets_scl_minus_1(tmp_path):
    async with running_hub(tmp_path, cf() | {"internal_smtp_servers": ["127.0.0.0/8"]}) as hub:
        await deliver(hub, make_message(body="WIN A FREE CRUISE\r\n"))
        assert await hub.idle()
        [raw] = messages(hub, "alice@contoso.com")
        assert header_value(raw, SCL) == "-1"


async def test_messages_over_max_scan_size_are_not_scanned(tmp_path):
    async with running_hub(tmp_path, cf(max_scan_size=2048)) as hub:
        big = make_message(body="WIN A FREE CRUISE\r\n" + "x" * 3000 + "\r\n")
        _, reply = await deliver(hub, big)
        assert reply[0] == 250
        assert await hub.idle()
        [raw] = messages(hub, "alice@contoso.com")
        assert header_value(raw, SCL) is None
        assert hub.counters.get(COUNTERS, "Messages with SCL Unknown") == 1


async def test_spooled_message_is_scanned_from_its_file(tmp_path):
    """Over 1 MB the body is spooled: the rules still see it whole (the bad phrase is at the end)."""
    async with running_hub(tmp_path, cf()) as hub:
        _, reply = await deliver(hub, make_message(body="x" * 1_200_000 + "\r\nWIN A FREE CRUISE\r\n", extra_headers=DATE))
        assert reply[0] == 550


# -- the README's examples, through a hub with the shipped agents ------------------------------------------

def shipped_agents() -> list[dict]:
    return yaml.safe_load((REPO / "transport.yaml").read_text())["agents"]


@pytest.mark.parametrize("name, ip, helo, lands, scl", [
    ("legitimate", "192.0.2.10", "mail.fabrikam.com", "Inbox", "0"),
    ("spoof-contoso", "203.0.113.7", "mail.contoso.com", "rejected", None),
    ("bad-phrase", "192.0.2.10", "mail.fabrikam.com", "rejected", None),
    ("borderline-junk", "192.0.2.10", "mail.fabrikam.com", "Junk", "5"),
])
async def test_examples_land_where_the_readme_says(tmp_path, name, ip, helo, lands, scl):
    raw = (EXAMPLES / f"{name}.eml").read_bytes()
    async with running_hub(tmp_path, hub_with(*shipped_agents())) as hub:
        c = await as_client(hub.addresses[0][1], ip, helo)
        replies = await send_raw(c, "sender@fabrikam.com", ["alice@contoso.com"], raw)
        await c.close()
        assert await hub.idle()
        if lands == "rejected":
            assert replies[-1] == "550 5.7.1 Message rejected due to content restrictions"
            assert messages(hub, "alice@contoso.com") == messages(hub, "alice@contoso.com", ".Junk") == []
            return
        assert replies[-1].startswith("250 2.6.0")
        [got] = messages(hub, "alice@contoso.com", ".Junk" if lands == "Junk" else "")
        assert header_value(got, SCL) == scl
        assert header_value(got, REPORT).endswith(f";OrigIP:{ip}")
        assert header_value(got, EXPLANATION_HEADER).startswith(f"SCL {scl} ")


def test_cli_json_and_text():
    done = run_cli("content-filter", "test", str(EXAMPLES / "spoof-contoso.eml"), "--ip", "203.0.113.7", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["scl"] == 7 and data["lands"].startswith("Reject")
    assert [r["name"] for r in data["rules"]] == ["sender_id_fail", "reply_to_mismatch", "all_caps_subject"]
    text = run_cli("content-filter", "test", str(EXAMPLES / "borderline-junk.eml"), "--ip", "192.0.2.10")
    assert text.stdout.splitlines()[0] == "SCL 5 (score 4.5), PCL 1" and "lands: Junk" in text.stdout
    missing = run_cli("content-filter", "test", "nonexistent.eml")
    assert missing.returncode == 1 and "nonexistent.eml" in missing.stderr
    not_mail = run_cli("content-filter", "test", str(REPO / "Makefile"))
    assert not_mail.returncode == 1
    assert not_mail.stderr.strip().endswith("the file is not a message: it does not start with a header field (Name: value)")
