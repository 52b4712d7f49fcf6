"""`transport trace`: the README's example messages get the dispositions the README promises, the same message
sent to a running hub lands where the trace said, the connector's own refusals, agents' steps and stamps, the DNS
record, and the command (text, --json, standard input, a file that is not a message)."""

from __future__ import annotations

import json

import pytest
import yaml

from filtertools import as_client, hub_with, send_raw
from hubtools import REPO, agent, make_message, messages, run_cli, running_hub, write_config
from transport.core.config import load_config
from transport.core.errors import BadFileError, TransportError
from transport.trace import Disposition, trace_message

EXAMPLES = REPO / "examples" / "eml"
SHIPPED = yaml.safe_load((REPO / "transport.yaml").read_text())["agents"]
REJECTED = "550 5.7.1 Message rejected due to content restrictions"


def config(tmp_path, *agents, **extra):
    return load_config(write_config(tmp_path, hub_with(*(agents or SHIPPED)) | extra))


# The README's "See inside" and content filter sections promise these.
EXAMPLE_CASES = [
    ("legitimate", "192.0.2.10", "mail.fabrikam.com", Disposition.INBOX, 0),
    ("spoof-contoso", "203.0.113.7", "mail.contoso.com", Disposition.REJECTED, 7),
    ("bad-phrase", "192.0.2.10", "mail.fabrikam.com", Disposition.REJECTED, 9),
    ("borderline-junk", "192.0.2.10", "mail.fabrikam.com", Disposition.JUNK, 5),
]


@pytest.mark.parametrize("name, ip, helo, where, scl", EXAMPLE_CASES)
async def test_readme_examples_get_the_promised_disposition_and_the_hub_agrees(tmp_path, name, ip, helo, where, scl):
    raw = (EXAMPLES / f"{name}.eml").read_bytes()
    cfg = config(tmp_path)
    trace = await trace_message(cfg, raw, client_ip=ip, helo=helo)
    got = trace.to_json()
    assert got["scl"] == scl
    assert got["disposition"]["alice@contoso.com"]["where"] == where.value
    if where is Disposition.REJECTED:
        assert got["disposition"]["alice@contoso.com"]["reply"] == REJECTED
    assert got["rules"] and all({"name", "weight", "description"} <= set(r) for r in got["rules"])
    assert not (cfg.data_root / "queue").exists() and not (cfg.data_root / "mailboxes").exists()  # nothing queued

    # The same message, sent for real as the same client, lands where the trace said.
    sender = trace.sender
    async with running_hub(tmp_path, hub_with(*SHIPPED)) as hub:
        c = await as_client(hub.addresses[0][1], ip, helo)
        replies = await send_raw(c, sender, ["alice@contoso.com"], raw)
        await c.close()
        assert await hub.idle()
        inbox, junk = messages(hub, "alice@contoso.com"), messages(hub, "alice@contoso.com", ".Junk")
    real = {(1, 0): Disposition.INBOX, (0, 1): Disposition.JUNK}.get((len(inbox), len(junk)), Disposition.REJECTED)
    assert real is where
    if where is Disposition.REJECTED:
        assert replies[-1] == got["disposition"]["alice@contoso.com"]["reply"]


async def test_connector_and_agent_refusals_per_recipient(tmp_path):
    cfg = config(tmp_path)
    raw = (EXAMPLES / "legitimate.eml").read_bytes()
    trace = await trace_message(cfg, raw, client_ip="192.0.2.10", helo="mail.fabrikam.com",
                                recipients=["alice@contoso.com", "nobody@contoso.com", "x@woodgrove.example"])
    d = trace.to_json()["disposition"]
    assert d["alice@contoso.com"]["where"] == "Inbox"
    assert d["nobody@contoso.com"] == {"where": "Rejected", "reply": "550 5.1.1 User unknown", "by": "RCPT TO"}
    assert d["x@woodgrove.example"]["reply"] == "550 5.7.1 Unable to relay"
    blocked = await trace_message(cfg, raw, client_ip="192.0.2.66")
    assert blocked.disposition["alice@contoso.com"]["where"] is Disposition.REJECTED
    assert blocked.disposition["alice@contoso.com"]["by"] == "Connection Filtering Agent"
    client = await trace_message(cfg, raw, connector="Default Frontend", mail_from="x@fabrikam.com")
    assert client.sender == "x@fabrikam.com"
    with pytest.raises(TransportError, match="no receive connector 'Nope'"):
        await trace_message(cfg, raw, connector="Nope")


async def test_categorizer_failure_unreachable_and_routing_agent(tmp_path):
    cfg = load_config(write_config(tmp_path, hub_with(agent("hubtools:RouteTrace", 10), permission_groups=["ExchangeServers"])))
    raw = make_message()
    trace = await trace_message(cfg, raw, mail_from="a@contoso.com",
                                recipients=["nobody@contoso.com", "bob@contoso.com", "x@woodgrove.example"])
    assert trace.disposition["nobody@contoso.com"] == {"where": Disposition.FAILED, "by": "categorizer",
                                                     "reply": "550 5.1.1 RESOLVER.ADR.ExRecipNotFound; not found"}
    assert trace.disposition["bob@contoso.com"]["where"] is Disposition.INBOX
    assert trace.disposition["x@woodgrove.example"] == {"where": Disposition.UNREACHABLE, "next_hop": "Unreachable"}
    events = [s.event for s in trace.steps if s.agent == "Test Route Trace"]
    assert events == ["OnSubmittedMessage", "OnResolvedMessage", "OnRoutedMessage", "OnCategorizedMessage"]
    assert any("X-Route-Trace: on_submitted" in st for s in trace.steps for st in s.stamps)
    deleting = config(tmp_path, agent("hubtools:RouteTrace", 10, delete_at="on_resolved"))
    gone = await trace_message(deleting, raw, recipients=["bob@contoso.com"])
    assert gone.disposition["bob@contoso.com"] == {"where": Disposition.DELETED, "reply": None, "by": "Test Route Trace"}


async def test_steps_record_decisions_errors_stamps_and_dns(tmp_path):
    cfg = config(tmp_path, agent("hubtools:Crash", 1, events=["on_rcpt_to"]), agent("hubtools:StampScl", 2, scl=6),
                 *SHIPPED[3:5])  # reverse DNS, Sender ID
    trace = await trace_message(cfg, (EXAMPLES / "legitimate.eml").read_bytes(), client_ip="192.0.2.10",
                                helo="mail.fabrikam.com")
    crash = next(s for s in trace.steps if s.agent == "Test Crasher" and s.error)
    assert (crash.event, crash.error) == ("OnRcptCommand", "RuntimeError: boom in on_rcpt_to")
    stamper = next(s for s in trace.steps if s.agent == "Test SCL Stamper")
    assert "X-MS-Exchange-Organization-SCL: 6" in stamper.stamps
    assert trace.scl == 6 and trace.rules == [{"name": "Test SCL Stamper", "weight": None,
                                               "description": "set SCL 6", "forces_scl": 6}]
    assert trace.disposition["alice@contoso.com"]["where"] is Disposition.JUNK
    dns = {(q.name, q.rdtype): q for q in trace.dns}
    ptr = dns[("10.2.0.192.in-addr.arpa", "PTR")]
    assert (ptr.answers, ptr.agent, ptr.event) == (["mail.fabrikam.com"], "Reverse DNS Agent", "OnEhloCommand")
    assert ptr.ms >= 0 and dns[("fabrikam.com", "TXT")].agent == "Sender Id Agent"


async def test_not_a_message_and_no_recipients(tmp_path):
    cfg = config(tmp_path)
    with pytest.raises(BadFileError, match="not a message"):
        await trace_message(cfg, b"just some text\n")
    with pytest.raises(BadFileError, match="no recipients"):
        await trace_message(cfg, b"Subject: hi\r\n\r\nbody\r\n")


def test_cli_text_json_stdin_and_errors(tmp_path):
    path = write_config(tmp_path, hub_with(*SHIPPED))
    eml = str(EXAMPLES / "borderline-junk.eml")
    text = run_cli("trace", "-c", str(path), eml, "--ip", "192.0.2.10", "--helo", "mail.fabrikam.com")
    assert text.returncode == 0, text.stderr
    assert "Sender Id Agent" in text.stdout and "softfail.example TXT: NOERROR (1)" in text.stdout
    assert text.stdout.rstrip().endswith("alice@contoso.com  Junk (folder .Junk; SCLJunkThreshold 4)")
    as_json = run_cli("trace", "-c", str(path), eml, "--ip", "192.0.2.10", "--json")
    data = json.loads(as_json.stdout)
    assert data["scl"] == 5 and data["disposition"]["alice@contoso.com"]["where"] == "Junk"
    assert [r["name"] for r in data["rules"]] == ["sender_id_softfail", "html_only", "many_urls"]
    import subprocess
    from hubtools import TRANSPORT_BIN, subprocess_env
    piped = subprocess.run([str(TRANSPORT_BIN), "trace", "-c", str(path), "--json", "--rcpt", "bob@contoso.com"],
                           input=(EXAMPLES / "legitimate.eml").read_bytes(), capture_output=True, env=subprocess_env())
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["disposition"] == {"bob@contoso.com": {"where": "Inbox", "folder": "Inbox",
                                                                           "junk_threshold": 4}}
    bad = run_cli("trace", "-c", str(path), str(REPO / "Makefile"))
    assert bad.returncode == 1
    assert bad.stderr.strip().endswith("the file is not a message: it does not start with a header field (Name: value)")


@pytest.mark.parametrize("event, action, where, reply", [
    ("on_end_of_data", "quarantine", Disposition.QUARANTINE, None),
    ("on_end_of_data", "delete", Disposition.DELETED, None),
    ("on_end_of_headers", "reject", Disposition.REJECTED, "550 5.7.1 Rejected by test agent"),
    ("on_rcpt_to", "disconnect", Disposition.REJECTED, "(connection dropped)"),
    ("on_connect", "reject_connection", Disposition.REJECTED, "550 5.7.1 Rejected by test agent"),
])
async def test_agent_actions_give_their_disposition(tmp_path, event, action, where, reply):
    cfg = config(tmp_path, agent("hubtools:Act", 1, event=event, action=action))
    trace = await trace_message(cfg, make_message(), recipients=["alice@contoso.com"])
    d = trace.disposition["alice@contoso.com"]
    assert d["where"] is where and d.get("reply") == reply
    if where is not Disposition.QUARANTINE:
        assert d["by"] == "Test Actor"
    else:
        assert trace.scl == 9 and d["folder"] == ".Junk"
