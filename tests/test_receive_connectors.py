"""Receive connectors as a list: selection by remote IP range, permission groups, RequireTLS, per-connector
limits and agents, the connector-id in the tracking log, and the shipped configuration."""

from __future__ import annotations

import asyncio
import base64
import socket

import yaml

from filtertools import CONNECTION_FILTER, as_client, send_raw
from hubtools import REPO, RawSmtp, agent, free_port, make_message, running_hub, tracking, write_config
from transport.core.config import load_config

LOGIN = base64.b64encode(b"\0alice@contoso.com\0Passw0rd!").decode()


def connectors(*extra: dict) -> dict:
    default = {"name": "Default Frontend", "bindings": ["127.0.0.1:0"], "fqdn": "hub.contoso.com",
               "tls": {"enabled": False}, "tarpit_interval": 0, "xclient_trusted": ["127.0.0.1"]}
    return {"receive": [default, *({"fqdn": "hub.contoso.com", "tls": {"enabled": False}, **e} for e in extra)]}


async def test_a_client_frontend_requires_auth_and_bypasses_anti_spam(tmp_path):
    extra = connectors({"name": "Client Frontend", "bindings": ["127.0.0.1:0"], "permission_groups": ["ExchangeUsers"]})
    extra["agents"] = [agent(CONNECTION_FILTER, 1, ip_block_list=["127.0.0.1"])]
    async with running_hub(tmp_path, extra) as hub:
        client = hub.connectors.connector("Client Frontend").addresses[0][1]
        c = await RawSmtp.connect(client)
        assert "AUTH" in await c.cmd("EHLO client.local")
        assert await c.cmd("MAIL FROM:<alice@contoso.com>") == "530 5.7.1 Client was not authenticated"
        assert (await c.cmd(f"AUTH PLAIN {LOGIN}")).startswith("235")
        replies = await send_raw(c, "alice@contoso.com", ["someone@fabrikam.com"], make_message(message_id="<cf@t>"))
        assert replies[-1].startswith("250 2.6.0"), replies  # relays, and the IP Block list does not apply
        rows = [r for r in tracking(hub) if r["event-id"] == "RECEIVE" and r["message-id"] == "<cf@t>"]
        assert rows[0]["connector-id"] == "Client Frontend"
        # the same client, anonymous on the Default Frontend, meets the IP Block list
        d = await RawSmtp.connect(hub.addresses[0][1])
        await d.cmd("EHLO client.local")
        assert (await d.cmd("MAIL FROM:<x@fabrikam.com>")).startswith("550 5.7.1 External client with IP address 127.0.0.1")


async def test_the_most_specific_remote_ip_range_wins(tmp_path):
    port = free_port()
    extra = connectors({"name": "Loopback", "bindings": [f"127.0.0.1:{port}"], "remote_ip_ranges": ["127.0.0.1/32"],
                        "max_message_size": 100})
    extra["receive"][0]["bindings"] = [f"127.0.0.1:{port}"]
    extra["receive"][0]["remote_ip_ranges"] = ["127.0.0.0/8"]
    async with running_hub(tmp_path, extra) as hub:
        c = await RawSmtp.connect(port)
        assert "SIZE 100" in await c.cmd("EHLO client.local")  # Loopback's settings, not Default Frontend's
        replies = await send_raw(c, "x@fabrikam.com", ["alice@contoso.com"], b"Subject: s\r\n\r\nhi\r\n")
        assert replies[-1].startswith("250 2.6.0")
        assert [r["connector-id"] for r in tracking(hub) if r["event-id"] == "RECEIVE"] == ["Loopback"]


async def test_require_tls(tmp_path):
    async with running_hub(tmp_path, connectors() | {"receive": [{**connectors()["receive"][0], "require_tls": True}]}) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1])
        await c.cmd("EHLO client.local")
        assert await c.cmd("MAIL FROM:<x@fabrikam.com>") == "530 5.7.0 Must issue a STARTTLS command first"


async def test_agents_run_only_on_the_connectors_that_name_them(tmp_path):
    extra = connectors({"name": "Partner", "bindings": ["127.0.0.1:0"], "agents": [], "xclient_trusted": ["127.0.0.1"]})
    extra["agents"] = [agent(CONNECTION_FILTER, 1, ip_block_list=["192.0.2.66"])]
    async with running_hub(tmp_path, extra) as hub:
        partner = hub.connectors.connector("Partner").addresses[0][1]
        assert (await (await as_client(partner, "192.0.2.66")).cmd("MAIL FROM:<x@fabrikam.com>")).startswith("250")
        default = await as_client(hub.addresses[0][1], "192.0.2.66")
        assert (await default.cmd("MAIL FROM:<x@fabrikam.com>")).startswith("550 5.7.1")


async def test_a_connectors_agent_list_scopes_custom_agents_too(tmp_path):
    extra = connectors({"name": "Partner", "bindings": ["127.0.0.1:0"], "agents": ["Test Actor"]},
                       {"name": "Quiet", "bindings": ["127.0.0.1:0"], "agents": []})
    extra["agents"] = [agent("hubtools:Act", event="on_rcpt_to", action="reject")]
    async with running_hub(tmp_path, extra) as hub:
        for name, refused in (("Partner", True), ("Quiet", False)):
            c = await RawSmtp.connect(hub.connectors.connector(name).addresses[0][1])
            await c.cmd("EHLO client.fabrikam.test")
            await c.cmd("MAIL FROM:<john@fabrikam.test>")
            reply = await c.cmd("RCPT TO:<alice@contoso.com>")
            assert reply.startswith("550 5.7.1") is refused, (name, reply)
            await c.close()


def test_one_mapping_and_a_list_both_load(tmp_path):
    one = tmp_path / "one.yaml"
    one.write_text("receive:\n  name: Only\n  bindings: ['127.0.0.1:2600']\n")
    assert [c.name for c in load_config(one).receive_connectors] == ["Only"]
    two = tmp_path / "two.yaml"
    two.write_text("receive:\n  - name: A\n  - name: A\n    bindings: ['127.0.0.1:2601']\n")
    import pytest
    from transport.core.errors import ConfigError
    with pytest.raises(ConfigError, match=r"two\.yaml:3: receive\.1\.name: two receive connectors are named 'A'"):
        load_config(two)


async def test_the_shipped_configuration(tmp_path):
    """transport.yaml's demo, on ephemeral ports: each outcome the README shows."""
    data = yaml.safe_load((REPO / "transport.yaml").read_text())
    data["data_root"] = str(tmp_path / "var")
    data["dns"]["zone_files"] = [str(REPO / "examples" / "zones" / "demo.zone")]
    for rc in data["receive"]:
        rc["bindings"] = ["127.0.0.1:0"]
        rc["tls"] = {"enabled": False}
        rc["tarpit_interval"] = 0
    data["queue"] = {"durable": False}
    data["metrics"]["binding"] = "127.0.0.1:0"  # the shipped port may be taken (a `make run` hub)
    cfg = tmp_path / "transport.yaml"
    cfg.write_text(yaml.safe_dump(data))
    from transport.hub import Hub
    hub = Hub(load_config(cfg))
    await hub.start()
    try:
        assert [c.settings.name for c in hub.connectors.connectors] == ["Default Frontend", "Client Frontend"]
        port = hub.addresses[0][1]
        assert (await (await as_client(port, "192.0.2.66")).cmd("MAIL FROM:<x@fabrikam.com>")).startswith(
            "550 5.7.1 External client with IP address 192.0.2.66")
        r = await send_raw(await as_client(port, "192.0.2.99"), "x@fabrikam.com", ["alice@contoso.com"], make_message())
        assert r[1] == "550 5.7.1 Recipient not authorized, your IP has been found on a block list"
        r = await send_raw(await as_client(port, "192.0.2.10"), "spammer@fabrikam.example", [], make_message())
        assert r == ["554 5.1.0 Sender denied"]
        r = await send_raw(await as_client(port, "192.0.2.10"), "x@fabrikam.com", ["nobody@contoso.com"], make_message())
        assert r[1] == "550 5.1.1 User unknown"
        client = hub.connectors.connector("Client Frontend").addresses[0][1]
        c = await RawSmtp.connect(client)
        await c.cmd("EHLO c")
        assert await c.cmd("MAIL FROM:<alice@contoso.com>") == "530 5.7.1 Client was not authenticated"
    finally:
        await hub.stop(grace=1.0)


async def test_bind_gives_each_receive_process_its_share_of_sockets_per_address(tmp_path):
    """`bind([2, 1])`: the first process two sockets per address, the second one, every block in address order
    and every socket of an address on its port; the second process takes a third of the new connections."""
    from transport.hub import Hub

    config = load_config(write_config(tmp_path, {"receive": [
        {"name": "A", "bindings": ["127.0.0.1:0"]}, {"name": "B", "bindings": ["127.0.0.1:0"]}]}))
    connectors = Hub(config).connectors
    first, second = connectors.bind([2, 1])
    try:
        ports = [s.getsockname()[1] for s in first]
        assert len(first) == 4 and ports[:2] == ports[2:] and ports[0] != ports[1]
        assert [s.getsockname()[1] for s in second] == ports[:2]
        assert connectors.addresses == [("127.0.0.1", p) for p in ports[:2]]
        port = ports[0]
        for sock in first + second:
            sock.setblocking(False)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
        await asyncio.sleep(0.2)
        taken = []
        for sock in (first[0], first[2], second[0]):
            n = 0
            while True:
                try:
                    sock.accept()[0].close()
                    n += 1
                except BlockingIOError:
                    break
            taken.append(n)
        for client in clients:
            client.close()
        assert sum(taken) == 300 and 50 <= taken[2] <= 150, taken  # a third: 100 ± 50 (over 8 deviations)
    finally:
        for sock in first + second:
            sock.close()
