"""The content filter's actions per recipient (per-mailbox overrides, mixed replies, quarantine), the PCL, the soft
DNS list rule, custom rules by dotted path and the trained Bayes classifier, over real SMTP."""

from __future__ import annotations

import json
from pathlib import Path

from filtertools import as_client, connection_filter, hub_with, send_raw
from hubtools import (agent, base_config, header_value, make_message, messages, run_cli, running_hub, tracking,
                      write_config)
from test_content_filter import CONTENT_FILTER, DATE, SCL, SPAMMY, cf, deliver
from agents.content_filter import COUNTERS, EXPLANATION_HEADER, PCL_HEADER
from transport.config_check import check_config

QUARANTINE = "quarantine@contoso.com"
REJECTED = "550 5.7.1 Message rejected due to content restrictions"
REPORT = "X-MS-Exchange-Organization-Antispam-Report"


def with_mailboxes(tmp_path: Path, extra: dict, **overrides: dict) -> dict:
    """`extra` with the base mailboxes (each with its overrides) and the quarantine mailbox."""
    boxes = [dict(mb, **overrides.get(mb["address"].partition("@")[0], {})) for mb in base_config(tmp_path)["mailboxes"]]
    return extra | {"mailboxes": boxes + [{"address": QUARANTINE}], "organization": {"quarantine_mailbox": QUARANTINE}}


def fails(hub) -> dict[str, str]:
    return {r["recipient-address"]: r["recipient-status"] for r in tracking(hub) if r["event-id"] == "FAIL"}


async def test_per_mailbox_reject_and_junk_overrides_give_each_recipient_its_own_action(tmp_path):
    """SPAMMY is SCL 5: alice rejects from 5, bob keeps the filter's 7 (Junk, above 4), carol's junk threshold is 8."""
    extra = with_mailboxes(tmp_path, cf(), alice={"scl_reject_threshold": 5})
    async with running_hub(tmp_path, extra) as hub:
        _, reply = await deliver(hub, SPAMMY, rcpts=("alice@contoso.com", "bob@contoso.com", "carol@contoso.com"))
        assert reply[0] == 250  # mixed: the client is told 250, the rejected recipient fails on its own
        assert await hub.idle()
        assert fails(hub) == {"alice@contoso.com": REJECTED}
        assert messages(hub, "alice@contoso.com") == messages(hub, "alice@contoso.com", ".Junk") == []
        assert len(messages(hub, "bob@contoso.com", ".Junk")) == 1
        assert len(messages(hub, "carol@contoso.com")) == 1 and messages(hub, "carol@contoso.com", ".Junk") == []
        assert hub.counters.get(COUNTERS, "Messages Rejected") == 1


async def test_every_recipient_rejected_by_its_override_gets_the_550(tmp_path):
    extra = with_mailboxes(tmp_path, cf(), alice={"scl_reject_threshold": 5}, bob={"scl_reject_threshold": 3})
    async with running_hub(tmp_path, extra) as hub:
        _, reply = await deliver(hub, SPAMMY, rcpts=("alice@contoso.com", "bob@contoso.com"))
        assert reply == (550, REJECTED[4:].encode())


async def test_junk_disabled_per_mailbox_keeps_spam_in_the_inbox(tmp_path):
    async with running_hub(tmp_path, with_mailboxes(tmp_path, cf(), alice={"scl_junk_enabled": False})) as hub:
        await deliver(hub, SPAMMY)
        assert await hub.idle()
        [raw] = messages(hub, "alice@contoso.com")
        assert header_value(raw, SCL) == "5"


async def test_deleted_for_one_rejected_for_another(tmp_path):
    """alice deletes from 5 (silently), bob rejects from 5: 250 to the client, bob's FAIL, nothing delivered."""
    extra = with_mailboxes(tmp_path, cf(), alice={"scl_delete_enabled": True, "scl_delete_threshold": 5},
                           bob={"scl_reject_threshold": 5})
    async with running_hub(tmp_path, extra) as hub:
        _, reply = await deliver(hub, SPAMMY, rcpts=("alice@contoso.com", "bob@contoso.com"))
        assert reply[0] == 250 and b"InternalId" in reply[1]
        assert await hub.idle()
        assert fails(hub) == {"bob@contoso.com": REJECTED}
        for who in ("alice", "bob"):
            assert messages(hub, f"{who}@contoso.com") == messages(hub, f"{who}@contoso.com", ".Junk") == []
        assert hub.counters.get(COUNTERS, "Messages Deleted") == 1 and hub.counters.get(COUNTERS, "Messages Rejected") == 1


async def test_every_recipient_deleted_by_its_override_gets_the_fake_250(tmp_path):
    extra = with_mailboxes(tmp_path, cf(), alice={"scl_delete_enabled": True, "scl_delete_threshold": 5})
    async with running_hub(tmp_path, extra) as hub:
        _, reply = await deliver(hub, SPAMMY)
        assert reply[0] == 250 and b"InternalId" not in reply[1]
        assert await hub.idle()
        assert messages(hub, "alice@contoso.com") == messages(hub, "alice@contoso.com", ".Junk") == []


async def test_quarantine_threshold_sends_the_message_to_the_quarantine_mailbox(tmp_path):
    extra = with_mailboxes(tmp_path, cf(scl_quarantine_enabled=True, scl_quarantine_threshold=5),
                           carol={"scl_quarantine_enabled": False})
    async with running_hub(tmp_path, extra) as hub:
        _, reply = await deliver(hub, SPAMMY, rcpts=("alice@contoso.com", "carol@contoso.com"))
        assert reply[0] == 250
        assert await hub.idle()
        [copy] = messages(hub, QUARANTINE)
        assert header_value(copy, "X-MS-Exchange-Organization-Original-Sender") == "<x@fabrikam.test>"
        assert header_value(copy, "X-MS-Exchange-Organization-OriginalEnvelopeRecipients") == "<alice@contoso.com>"
        assert header_value(copy, "X-Transport-Quarantine-Reason").startswith("Content Filter Agent: SCL 5 (score 5): ")
        assert header_value(copy, SCL) == "5"
        assert messages(hub, "alice@contoso.com") == messages(hub, "alice@contoso.com", ".Junk") == []
        assert len(messages(hub, "carol@contoso.com")) == 1  # carol turned quarantine off; 5 is under her junk 8
        [redirect] = [r for r in tracking(hub) if r["event-id"] == "REDIRECT"]
        assert (redirect["recipient-address"], redirect["related-recipient-address"]) == ("alice@contoso.com", QUARANTINE)
        assert redirect["recipient-status"] == "550 5.2.1 Content Filter agent quarantined this message"
        assert hub.counters.get(COUNTERS, "Messages Quarantined") == 1


def test_quarantine_without_a_quarantine_mailbox_is_a_configuration_error(tmp_path):
    path = write_config(tmp_path, cf(scl_quarantine_enabled=True))
    config, problems = check_config(path)
    assert config is None
    assert [p.split(": ", 1)[1] for p in problems] == [
        "agents.0.config: scl_quarantine_enabled needs organization.quarantine_mailbox (the mailbox that receives "
        "quarantined mail)"]
    assert problems[0].startswith(f"{path}:")


# -- PCL, the soft DNS list, custom rules ----------------------------------------------------------------------

PHISH = make_message(sender='"Contoso.com IT" <it@contoso-help.example>', extra_headers=DATE + "Content-Type: text/html\r\n",
                     body='<p>Text</p><a href="https://evil.example/login">https://portal.contoso.com/login</a>\r\n')


async def test_phishing_rules_make_the_pcl(tmp_path):
    async with running_hub(tmp_path, cf(scl_reject_enabled=False)) as hub:
        await deliver(hub, PHISH)
        await deliver(hub, make_message(message_id="<plain@fabrikam.test>", extra_headers=DATE))
        assert await hub.idle()
        phish, plain = sorted(messages(hub, "alice@contoso.com") + messages(hub, "alice@contoso.com", ".Junk"),
                              key=lambda raw: header_value(raw, "Message-ID") != "<m1@fabrikam.test>")
        explanation = header_value(phish, EXPLANATION_HEADER)
        assert "display_name_impersonation +3" in explanation
        assert "link_text_mismatch +3 (link shows portal.contoso.com, opens evil.example)" in explanation
        assert header_value(phish, PCL_HEADER) == "7"  # 1 + 3 + 3
        assert "PCL:PhishingLevel SUSPICIOUS" in header_value(phish, REPORT)
        assert header_value(plain, PCL_HEADER) == "1" and "PCL:" not in header_value(plain, REPORT)


async def test_a_stampstatus_list_provider_adds_weight_instead_of_refusing(tmp_path):
    soft = {"name": "Demo Soft List", "lookup_domain": "bl.contoso-demo.test", "action": "StampStatus"}
    extra = hub_with(connection_filter(block_list_providers=[soft]), agent(CONTENT_FILTER, 6))
    async with running_hub(tmp_path, extra) as hub:
        c = await as_client(hub.addresses[0][1], "192.0.2.99")
        replies = await send_raw(c, "x@fabrikam.test", ["alice@contoso.com"], make_message(extra_headers=DATE))
        await c.close()
        assert replies[1].startswith("250 2.1.5") and replies[-1].startswith("250 2.6.0")
        assert await hub.idle()
        [raw] = messages(hub, "alice@contoso.com")
        assert "dns_block_list +2.5 (listed by Demo Soft List)" in header_value(raw, EXPLANATION_HEADER)
        assert header_value(raw, SCL) == "3"


async def test_a_custom_rule_named_by_dotted_path_scores(tmp_path):
    rule = {"class": "examples.content_rules:SubjectTag", "weight": 3, "config": {"tags": ["[PROMO]"]}}
    async with running_hub(tmp_path, cf(rules=[rule])) as hub:
        await deliver(hub, make_message(subject="[promo] New shoes", extra_headers=DATE))
        assert await hub.idle()
        [raw] = messages(hub, "alice@contoso.com")
        assert header_value(raw, EXPLANATION_HEADER) == "SCL 3 (score 3): subject_tag +3 (subject starts with [PROMO])"


def test_a_custom_rule_that_does_not_load_is_a_configuration_error(tmp_path):
    rules = [{"class": "examples.content_rules:Nothing", "weight": 1},
             {"class": "examples.recipient_block:RecipientBlockAgent", "weight": 1},
             {"class": "examples.content_rules:SubjectTag", "weight": 1, "config": {"colour": "red"}}]
    _, problems = check_config(write_config(tmp_path, cf(rules=rules)))
    assert [p.split(": ", 1)[1] for p in problems] == [
        "agents.0.config.rules.0.class: 'examples.content_rules' has no 'Nothing'"]
    _, problems = check_config(write_config(tmp_path, cf(rules=rules[1:])))
    assert [p.split(": ", 1)[1] for p in problems] == [
        "agents.0.config.rules.0.class: 'examples.recipient_block:RecipientBlockAgent' is not a content filter rule "
        "(`module:Class`, a subclass of agents.content_filter.Rule)"]
    _, problems = check_config(write_config(tmp_path, cf(rules=rules[2:])))
    assert [p.split(": ", 1)[1] for p in problems] == ["agents.0.config.rules.0: config.colour: unknown setting"]


# -- the Bayes classifier -------------------------------------------------------------------------------------

HAM_WORDS = ["quarterly", "budget", "meeting", "agenda", "project", "timeline", "review", "minutes", "invoice",
             "schedule", "team", "report", "deadline", "draft", "slides"]
SPAM_WORDS = ["casino", "bonus", "winner", "discount", "pills", "cheap", "jackpot", "unsubscribe", "offer",
              "viagra", "lottery", "exclusive", "prize", "credit", "refinance"]


def corpus(words: list[str], n: int, seed: int) -> list[bytes]:
    return [make_message(subject=f"{words[(i + seed) % 15]} {words[(i * 3 + seed) % 15]}", message_id=f"<c{seed}-{i}@x.test>",
                         body=" ".join(words[(i * k + seed) % 15] for k in range(1, 9)) + "\r\n", extra_headers=DATE)
            for i in range(n)]


async def held_out_scls(tmp_path: Path, extra: dict) -> dict[str, str]:
    """The SCL of a spam-like and a ham-like message neither corpus holds (the ham one would score 2 by the rules)."""
    spam = make_message(subject="Exclusive casino bonus", message_id="<hs@x.test>", extra_headers=DATE,
                        body="Winner! Jackpot prize, cheap credit offer.\r\n")
    ham = make_message(subject="Budget review", message_id=None, body="Draft agenda and slides for the team meeting.\r\n")
    async with running_hub(tmp_path, extra) as hub:
        await deliver(hub, spam)
        await deliver(hub, ham)
        assert await hub.idle()
        got = messages(hub, "alice@contoso.com") + messages(hub, "alice@contoso.com", ".Junk")
    return {"spam" if header_value(raw, "Message-ID") == "<hs@x.test>" else "ham": header_value(raw, SCL) for raw in got}


async def test_training_moves_held_out_messages_the_expected_way(tmp_path):
    extra = cf(bayes_enabled=True, bayes_min_messages=10)
    (tmp_path / "before").mkdir()
    before = await held_out_scls(tmp_path / "before", extra)
    assert before == {"spam": "0", "ham": "2"}  # untrained: the bayes rule says nothing
    (tmp_path / "after").mkdir()
    config = write_config(tmp_path / "after", extra)
    ham, spam = tmp_path / "ham", tmp_path / "spam"
    for i, raw in enumerate(corpus(HAM_WORDS, 15, 1)):  # a Maildir
        (ham / ("new" if i % 2 else "cur")).mkdir(parents=True, exist_ok=True)
        (ham / ("new" if i % 2 else "cur") / f"{i}.host:2,S").write_bytes(raw)
    spam.mkdir()
    for i, raw in enumerate(corpus(SPAM_WORDS, 15, 2)):  # a folder of .eml files
        (spam / f"{i}.eml").write_bytes(raw)
    (spam / "notes.txt").write_text("not a message, not an .eml: ignored")
    (spam / "broken.eml").write_text("this is no message")
    done = run_cli("content-filter", "train", "-c", str(config), "--ham", str(ham), "--spam", str(spam), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["ham"], summary["spam"], len(summary["skipped"])) == (15, 15, 1)
    assert Path(summary["database"]) == tmp_path / "after" / "data" / "content-filter" / "bayes.db"
    after = await held_out_scls(tmp_path / "after", extra)
    assert int(after["spam"]) >= 3 and after["ham"] == "0", after


def test_train_needs_a_folder_and_a_content_filter(tmp_path):
    config = write_config(tmp_path, cf())
    done = run_cli("content-filter", "train", "-c", str(config))
    assert done.returncode == 1 and "give at least one --ham or --spam folder" in done.stderr
    done = run_cli("content-filter", "train", "-c", str(config), "--ham", str(tmp_path / "missing"))
    assert done.returncode == 1 and "missing: not a folder" in done.stderr
    bare = write_config(tmp_path, {}, name="bare.yaml")
    done = run_cli("content-filter", "train", "-c", str(bare), "--ham", str(tmp_path))
    assert done.returncode == 1 and "no content filter agent is configured" in done.stderr
