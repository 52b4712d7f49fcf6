"""What the README promises about agents, the header firewall, STARTTLS and the Replay directory's options, each
checked with real agents loaded by the real pipeline, over real SMTP, in-process or in a subprocess hub."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import pytest

import hubtools
from agents import AgentConfig, ResolvedEvent, RoutingAgent
from filtertools import as_client, hub_with, send_raw
from hubtools import (HubProcess, directory_scans, drop_file, header_value, make_message, messages, run_cli,
                      running_hub, send, send_sync, wait_for, write_config)
from transport.core.mailitem import MailItem, Recipient
from transport.core.replay_format import serialize

LOGIN = ("alice@contoso.com", "Passw0rd!")
ORG_HEADERS = "X-MS-Exchange-Organization-Probe: kept\r\nX-MS-Exchange-Forest-RulesExecuted: hub\r\n"


class Override(RoutingAgent):
    """At OnResolvedMessage, sends each configured recipient to the configured next hop."""

    name = "Test Routing Override"

    class Config(AgentConfig):
        routes: dict[str, str] = {}

    async def on_resolved(self, event: ResolvedEvent) -> None:
        for r in event.mail_item.recipients:
            if r.address in self.config.routes:
                event.set_routing_override(r, self.config.routes[r.address])


def _env_with(monkeypatch: pytest.MonkeyPatch, **changes: str) -> None:
    """Subprocess hubs and commands started by hubtools get these environment variables changed."""
    original = hubtools.subprocess_env

    def env() -> dict[str, str]:
        out = original()
        for key, value in changes.items():
            out[key] = value.format(**out) if "{" in value else value
        return out

    monkeypatch.setattr(hubtools, "subprocess_env", env)


def _port(hub: HubProcess) -> int:
    return int(hub.ready_line.split("127.0.0.1:")[1].split(";")[0])


# -- the header firewall ------------------------------------------------------------------------------------------


async def test_internal_smtp_servers_keep_organization_headers(tmp_path):
    """README: "Header firewall: a session without the right (anything but authenticated users,
    `internal_smtp_servers` and ExchangeServers connectors) loses `X-MS-Exchange-Organization-*` and
    `X-MS-Exchange-Forest-*` headers"."""
    extra = {**hub_with(), "internal_smtp_servers": ["192.0.2.0/24"]}
    async with running_hub(tmp_path, extra) as hub:
        for ip, to in (("192.0.2.20", "alice@contoso.com"), ("198.51.100.7", "bob@contoso.com")):
            c = await as_client(hub.addresses[0][1], ip)
            replies = await send_raw(c, "x@fabrikam.com", [to], make_message(extra_headers=ORG_HEADERS, to=to))
            assert replies[-1].startswith("250"), replies
            await c.close()
        assert await hub.idle(), "the hub did not settle"
        [internal] = messages(hub, "alice@contoso.com")
        assert header_value(internal, "X-MS-Exchange-Organization-Probe") == "kept"
        assert header_value(internal, "X-MS-Exchange-Forest-RulesExecuted") == "hub"
        [anonymous] = messages(hub, "bob@contoso.com")  # the same from outside: stripped
        assert header_value(anonymous, "X-MS-Exchange-Organization-Probe") is None
        assert header_value(anonymous, "X-MS-Exchange-Forest-RulesExecuted") is None


# -- STARTTLS -----------------------------------------------------------------------------------------------------


def _ehlo_keywords(port: int) -> set[str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.fabrikam.test")
        return set(s.esmtp_features)


def test_starttls_is_not_offered_when_openssl_is_missing(tmp_path, monkeypatch):
    """README: "the self-signed STARTTLS certificate is made with the system's `openssl` on first run (STARTTLS is
    simply not offered if `openssl` is missing)"."""
    bare = tmp_path / "bin"  # a PATH with nothing on it
    bare.mkdir()
    _env_with(monkeypatch, PATH=str(bare))
    for name in ("without", "with"):
        (tmp_path / name).mkdir()
    hub = HubProcess(write_config(tmp_path / "without", {"receive": {"tls": {"enabled": True}}})).start()
    try:
        assert "starttls" not in _ehlo_keywords(_port(hub))
        _, reply = send_sync(_port(hub), "john@fabrikam.test", ["alice@contoso.com"], make_message())
        assert reply[0] == 250  # mail still flows, in the clear
    finally:
        hub.signal(signal.SIGINT)
        assert hub.wait(15) == 0
        stderr = hub.proc.stderr.read()
        hub.stop()
    assert "STARTTLS is off: no certificate configured and openssl could not make one" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "without" / "data" / "tls" / "cert.pem").exists()
    openssl = shutil.which("openssl")
    if openssl is None:
        return
    os.symlink(openssl, bare / "openssl")  # the same PATH with openssl on it: offered
    hub = HubProcess(write_config(tmp_path / "with", {"receive": {"tls": {"enabled": True}}})).start()
    try:
        assert "starttls" in _ehlo_keywords(_port(hub))
        assert (tmp_path / "with" / "data" / "tls" / "cert.pem").exists()
    finally:
        hub.stop()


async def test_on_starttls_runs_for_an_agent_when_a_client_starts_tls(tmp_path):
    """README: "SMTP receive agents (`SmtpReceiveAgent`) see `on_connect`, `on_helo`, `on_ehlo`, `on_starttls`, …"."""
    extra = {"receive": {"tls": {"enabled": True}}, "agents": [{"class": "hubtools:Watch"}]}
    async with running_hub(tmp_path, extra) as hub:
        watch = hub.pipeline.agents[0].agent
        _, reply = await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"], make_message(),
                              starttls=True)
        assert reply[0] == 250
        await wait_for(lambda: "on_disconnect" in watch.seen)
        assert watch.seen[:4] == ["on_connect", "on_ehlo", "on_starttls", "on_ehlo"]
        assert watch.seen.count("on_starttls") == 1
        _, reply = await send(hub.addresses[0][1], "john@fabrikam.test", ["bob@contoso.com"], make_message())
        assert reply[0] == 250
        await wait_for(lambda: watch.seen.count("on_disconnect") == 2)
        assert watch.seen.count("on_starttls") == 1  # a session without STARTTLS: no event


# -- routing agents ---------------------------------------------------------------------------------------------


async def test_set_routing_override_sends_a_recipient_to_that_next_hop(tmp_path):
    """README: "routing events | `defer(seconds)`, `delete()`, and on `on_resolved` `set_routing_override(recipient,
    next_hop)`"."""
    routes = {"alice@contoso.com": "Unreachable", "dave@fabrikam.test": "mailbox"}
    extra = {"agents": [{"class": "test_agent_promises:Override", "config": {"routes": routes}}]}
    async with running_hub(tmp_path, extra) as hub:
        recipients = ["alice@contoso.com", "bob@contoso.com", "dave@fabrikam.test"]
        _, reply = await send(hub.addresses[0][1], "alice@contoso.com", recipients,
                              make_message(message_id="<ovr@t>"), login=LOGIN)
        assert reply[0] == 250
        await wait_for(lambda: messages(hub, "dave@fabrikam.test") and messages(hub, "bob@contoso.com"))
        assert await hub.idle(), "the hub did not settle"
        assert messages(hub, "alice@contoso.com") == []  # her mailbox was not her next hop
        [waiting] = hub.store.items("queue='Unreachable'")
        assert waiting.recipients == ["alice@contoso.com"]


# -- loading agents -------------------------------------------------------------------------------------------------

EP_MODULE = '''\
from agents import RcptToEvent, SmtpReceiveAgent, SmtpResponse, AgentConfig


class BlockInterns(SmtpReceiveAgent):
    name = "Block Interns"

    class Config(AgentConfig):
        prefix: str = "intern"

    async def on_rcpt_to(self, event: RcptToEvent) -> None:
        if event.recipient.address.startswith(self.config.prefix):
            event.reject_command(SmtpResponse(550, "5.7.1", "Interns receive no mail"), reason="intern")
'''


def test_an_agent_is_loaded_by_its_entry_point_name(tmp_path, monkeypatch):
    """README: "class: myagents:BlockInterns       # or the name of an entry point in the `transport.agents`
    group"."""
    site = tmp_path / "site"  # an installed distribution: its module and its .dist-info
    (site / "blockinterns-1.0.dist-info").mkdir(parents=True)
    (site / "blockinterns.py").write_text(EP_MODULE)
    (site / "blockinterns-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: blockinterns\n"
                                                                  "Version: 1.0\n")
    (site / "blockinterns-1.0.dist-info" / "entry_points.txt").write_text(
        "[transport.agents]\nblock-interns = blockinterns:BlockInterns\n")
    _env_with(monkeypatch, PYTHONPATH=f"{site}{os.pathsep}{{PYTHONPATH}}")
    config = write_config(tmp_path, {"agents": [{"class": "block-interns", "priority": 10,
                                                 "config": {"prefix": "temp"}}]})
    listed = run_cli("pipeline", "-c", str(config))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[2].split()[:4] == ["OnRcptCommand", "Block", "Interns", "10"]
    hub = HubProcess(config).start()
    try:
        refused, reply = send_sync(_port(hub), "john@fabrikam.test", ["temp1@contoso.com", "alice@contoso.com"],
                                   make_message())
        assert refused == {"temp1@contoso.com": (550, b"5.7.1 Interns receive no mail")} and reply[0] == 250
    finally:
        hub.stop()
    unknown = write_config(tmp_path, {"agents": [{"class": "no-such-entry-point"}]}, name="unknown.yaml")
    result = run_cli("check-config", "-c", str(unknown))
    assert result.returncode == 1
    assert "'no-such-entry-point' is neither `module:Class` nor a `transport.agents` entry point" in result.stderr


# -- Replay without receive agents ------------------------------------------------------------------------------------


@pytest.mark.parametrize("run_receive_agents", [False, True])
async def test_replay_run_receive_agents(tmp_path, run_receive_agents):
    """README: "`pickup.run_receive_agents: false` (and the same under `replay:`) gives Exchange's exact behaviour"
    (no receive agents on dropped files; the Pickup case is in test_pickup.py)."""
    extra = {"replay": {"poll_interval": 0.05, "run_receive_agents": run_receive_agents},
             "agents": [{"class": "hubtools:Watch"}]}
    item = MailItem(sender="john@fabrikam.test", recipients=[Recipient("alice@contoso.com")],
                    raw=b"From: john@fabrikam.test\r\nTo: alice@contoso.com\r\nSubject: replayed\r\n\r\nBody\r\n")
    async with running_hub(tmp_path, extra) as hub:
        watch = hub.pipeline.agents[0].agent
        replay = hub.config.replay.directory(hub.config.data_root)
        drop_file(replay, "again.eml", serialize(item, "hub.contoso.com"))
        await wait_for(lambda: messages(hub, "alice@contoso.com"))
        assert await hub.idle(), "the hub did not settle"
        await directory_scans(hub)
        if run_receive_agents:
            assert "on_end_of_data" in watch.seen and "on_rcpt_to" in watch.seen
        else:
            assert watch.seen == []
