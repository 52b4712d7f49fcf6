"""The agent log: every agent verdict and every agent error, at every event, with Exchange's fields."""

from __future__ import annotations

from hubtools import RawSmtp, agent, make_message, running_hub, send
from transport.core.agent_log import FIELDS
from transport.core.logfile import log_files, read_rows


def agent_log(hub) -> list[dict[str, str]]:
    folder = hub.config.data_root / "logs" / "AgentLog"
    return [row for path in log_files(folder, "AGENTLOG") for row in read_rows(path, FIELDS)]


async def test_an_agent_that_raises_at_rcpt_is_in_the_agent_log(tmp_path):
    extra = {"agents": [agent("hubtools:Crash", 1, events=["on_rcpt_to"])]}
    async with running_hub(tmp_path, extra) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1])
        await c.cmd("EHLO client.fabrikam.test")
        await c.cmd("MAIL FROM:<john@fabrikam.test>")
        assert (await c.cmd("RCPT TO:<alice@contoso.com>")).startswith("250")  # fail open
        await c.close()
        assert await hub.idle()
        [row] = agent_log(hub)
    assert (row["Agent"], row["Event"], row["Action"]) == ("Test Crasher", "OnRcptCommand", "AgentError")
    assert row["ReasonData"] == "RuntimeError: boom in on_rcpt_to"
    assert (row["P1FromAddress"], row["Recipient"], row["NumRecipients"]) == ("john@fabrikam.test", "alice@contoso.com", "1")
    assert row["RemoteEndpoint"].startswith("127.0.0.1:") and row["SessionId"]
    assert (tmp_path / "data" / "logs" / "AgentLog").is_dir()


async def test_verdicts_at_every_event_and_stamps(tmp_path):
    extra = {"agents": [agent("hubtools:Act", 1, event="on_mail_from", code=554, enhanced="5.1.0", text="Sender denied"),
                        agent("hubtools:StampScl", 2, scl=5),
                        agent("hubtools:Act", 3, event="on_end_of_data", action="delete")]}
    extra["agents"][2]["name"] = "Deleter"
    async with running_hub(tmp_path, extra) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1])
        await c.cmd("EHLO client.fabrikam.test")
        assert (await c.cmd("MAIL FROM:<spam@fabrikam.test>")).startswith("554")
        await c.close()
        hub.pipeline.agents[0].agent.config.event = "none"
        await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<d@x>"))
        assert await hub.idle()
        rows = agent_log(hub)
    assert [(r["Agent"], r["Event"], r["Action"]) for r in rows] == [
        ("Test Actor", "OnMailCommand", "RejectCommand"), ("Deleter", "OnEndOfData", "DeleteMessage")]
    assert rows[0]["SmtpResponse"] == "554 5.1.0 Sender denied" and rows[0]["Reason"] == "test"
    assert rows[1]["MessageId"] == "<d@x>" and rows[1]["Recipient"] == "alice@contoso.com"


async def test_stamp_rows_and_switching_it_off(tmp_path):
    content_filter = agent("agents.content_filter:ContentFilterAgent", 1)
    async with running_hub(tmp_path, {"agents": [content_filter]}) as hub:
        await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"], make_message())
        assert await hub.idle()
        [row] = agent_log(hub)
    assert (row["Agent"], row["Event"], row["Action"], row["Reason"]) == (
        "Content Filter Agent", "OnEndOfData", "AcceptMessage", "Stamp")
    assert row["ReasonData"].startswith("SCL ")
    (tmp_path / "off").mkdir()
    async with running_hub(tmp_path / "off", {"agents": [content_filter], "agent_log": {"enabled": False}}) as hub:
        await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"], make_message())
        assert await hub.idle()
        assert agent_log(hub) == []
