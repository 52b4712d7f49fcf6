"""Agents that submit mail: source AGENT in tracking with the agent and the causing message, never handed back
to the agent that made it, a hop limit between agents; and the journal example."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

from agents import AgentConfig, EndOfDataEvent, RoutingAgent, SmtpReceiveAgent, SubmittedEvent
from hubtools import agent, header_value, make_message, messages, running_hub, scheduler_ticks, send, tracking, wait_for


class Notifier(RoutingAgent):
    """Submits a note to `to` for every message it sees (its own excepted, by construction)."""

    name = "Test Notifier"

    class Config(AgentConfig):
        to: str = "carol@contoso.com"

    async def on_submitted(self, event: SubmittedEvent) -> None:
        note = EmailMessage()
        note["From"], note["To"], note["Subject"] = "postmaster@contoso.com", self.config.to, f"saw {event.mail_item.subject}"
        note.set_content("noted")
        await self.submit(note, "postmaster@contoso.com", [self.config.to])


class ReceiveNotifier(SmtpReceiveAgent):
    """Submits raw bytes from a receive hook, before the message that caused it is queued."""

    name = "Test Receive Notifier"

    async def on_end_of_data(self, event: EndOfDataEvent) -> None:
        await self.submit(b"From: postmaster@contoso.com\r\nSubject: arriving\r\n\r\nsoon\r\n", "", ["bob@contoso.com"])


def notifier(name: str, to: str = "carol@contoso.com") -> dict[str, Any]:
    return agent("test_agent_submission:Notifier", to=to) | {"name": name}


async def test_agent_submission_is_delivered_with_source_agent(tmp_path: Path) -> None:
    async with running_hub(tmp_path, {"agents": [notifier("Notes")]}) as hub:
        await send(hub.addresses[0][1], "john@fabrikam.test", ["bob@contoso.com"], make_message("report", "<r@fabrikam.test>",
                   to="bob@contoso.com"))
        [note] = await wait_for(lambda: messages(hub, "carol@contoso.com"))
        assert await hub.idle()
        assert header_value(note, "Subject") == "saw report"
        assert header_value(note, "X-MS-Exchange-Organization-Generated-Message-Source") == "Notes"
        [row] = [r for r in tracking(hub) if r["event-id"] == "RECEIVE" and r["source"] == "AGENT"]
        assert (row["custom-data"], row["reference"], row["sender-address"]) == (
            "submitted by agent Notes", "<r@fabrikam.test>", "postmaster@contoso.com")
        assert [r["event-id"] for r in tracking(hub) if r["message-id"] == row["message-id"]] == [
            "RECEIVE", "SUBMIT", "DELIVER"]


async def test_an_agent_that_submits_on_every_message_does_not_loop(tmp_path: Path) -> None:
    async with running_hub(tmp_path, {"agents": [notifier("Notes")]}) as hub:
        await send(hub.addresses[0][1], "john@fabrikam.test", ["bob@contoso.com"], make_message(to="bob@contoso.com"))
        await wait_for(lambda: messages(hub, "carol@contoso.com"))
        assert await hub.idle()
        await scheduler_ticks(hub)
        assert await hub.idle()
        assert len(messages(hub, "carol@contoso.com")) == 1
        [la] = hub.pipeline.agents
        assert la.calls == 1  # the original only: its own note was not handed to it


async def test_a_chain_between_agents_stops_at_the_hop_limit(tmp_path: Path) -> None:
    extra = {"agents": [notifier("Ping", "carol@contoso.com"), notifier("Pong", "bob@contoso.com")],
             "agent_submission": {"max_hop_count": 3}}
    async with running_hub(tmp_path, extra) as hub:
        await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"], make_message())
        await wait_for(lambda: [r for r in tracking(hub) if "submit refused" in r["custom-data"]])
        assert await hub.idle()
        await scheduler_ticks(hub)
        assert await hub.idle()
        generated = [r for r in tracking(hub) if r["event-id"] == "RECEIVE" and r["source"] == "AGENT"]
        # the original makes one note from each agent (hop 1); each note makes one from the other (2, 3); then no more
        assert len(generated) == 2 + 2 + 2
        refused = [r for r in tracking(hub) if "submit refused" in r["custom-data"]]
        assert len(refused) == 2 and all("agent hop count 4 over agent_submission.max_hop_count (3)" in r["custom-data"]
                                         for r in refused)


async def test_submit_from_a_receive_hook(tmp_path: Path) -> None:
    async with running_hub(tmp_path, {"agents": [agent("test_agent_submission:ReceiveNotifier")]}) as hub:
        await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"], make_message())
        [note] = await wait_for(lambda: messages(hub, "bob@contoso.com"))
        assert header_value(note, "Subject") == "arriving" and header_value(note, "Return-Path") == "<>"
        assert len(await wait_for(lambda: messages(hub, "alice@contoso.com"))) == 1


JOURNAL = {"agents": [agent("examples.journal_agent:JournalAgent", priority=20,
                            journal_mailbox="carol@contoso.com", mailboxes=["alice@contoso.com"])]}


async def test_journal_example_reports_in_envelope_journaling_shape(tmp_path: Path) -> None:
    async with running_hub(tmp_path, JOURNAL) as hub:
        port = hub.addresses[0][1]
        original = make_message("Q3 numbers", "<q3@fabrikam.test>", to="alice@contoso.com")
        await send(port, "john@fabrikam.test", ["alice@contoso.com", "bob@contoso.com"], original)
        await send(port, "john@fabrikam.test", ["bob@contoso.com"], make_message("not journaled", "<n@fabrikam.test>",
                   to="bob@contoso.com"))
        [report] = await wait_for(lambda: messages(hub, "carol@contoso.com"))
        assert await hub.idle()
        parsed = email.message_from_bytes(report, policy=default)
        assert parsed["X-MS-Journal-Report"] is not None and parsed["Subject"] == "Q3 numbers"
        assert parsed["From"].addresses[0].username.startswith("MicrosoftExchange")
        body, attached = parsed.iter_parts()
        assert body.get_content().splitlines()[:5] == [
            "Sender: john@fabrikam.test", "Subject: Q3 numbers", "Message-Id: <q3@fabrikam.test>",
            "To: alice@contoso.com", "Bcc: bob@contoso.com"]
        assert attached.get_content_type() == "message/rfc822"
        inner = attached.get_payload()[0]
        assert inner["Message-ID"] == "<q3@fabrikam.test>" and inner["Subject"] == "Q3 numbers"
        assert header_value(report, "Return-Path") == "<>"
        [row] = [r for r in tracking(hub) if r["event-id"] == "RECEIVE" and r["source"] == "AGENT"]
        assert (row["custom-data"], row["reference"]) == ("submitted by agent Journal Agent", "<q3@fabrikam.test>")
