"""Exchange's receive limits over real connections: concurrent sessions per source and in all, failed logons,
the message rate per source, and the whole-session ConnectionTimeout. Loopback has many addresses, so a second
"client" connects from 127.0.0.2."""

from __future__ import annotations

import asyncio
import base64

from hubtools import RawSmtp, data, make_message, running_hub, wait_for

TOO_MANY = "421 4.3.2 The maximum number of concurrent connections has exceeded a limit, closing transmission channel"


async def _connect(port: int, source: str = "127.0.0.1") -> RawSmtp:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    client = RawSmtp(reader, writer)
    client.banner = await client.reply()
    return client


async def test_connections_over_the_per_source_limit_get_421_while_another_client_is_served(tmp_path):
    async with running_hub(tmp_path, {"receive": {"max_inbound_connection_per_source": 3}}) as hub:
        port = hub.addresses[0][1]
        idle = [await _connect(port) for _ in range(3)]
        assert all(c.banner.startswith("220 ") for c in idle)
        refused = await _connect(port)
        assert refused.banner == TOO_MANY and await refused.closed()
        other = await _connect(port, "127.0.0.2")
        await other.cmd("EHLO other.fabrikam.test")
        await other.cmd("MAIL FROM:<john@fabrikam.test>")
        await other.cmd("RCPT TO:<alice@contoso.com>")
        assert (await data(other, make_message() + b".\r\n")).startswith("250 2.6.0")
        await idle[0].close()
        await wait_for(lambda: hub.receive.limits.per_source["127.0.0.1"] == 2)
        again = await _connect(port)  # a slot is free again
        assert again.banner.startswith("220 ")
        for c in (*idle[1:], other, again):
            await c.close()


async def test_the_connector_wide_limit_counts_every_source(tmp_path):
    async with running_hub(tmp_path, {"receive": {"max_inbound_connection": 2,
                                                  "max_inbound_connection_percentage_per_source": 100}}) as hub:
        port = hub.addresses[0][1]
        first, second = await _connect(port), await _connect(port, "127.0.0.2")
        third = await _connect(port, "127.0.0.3")
        assert third.banner == TOO_MANY and second.banner.startswith("220 ")
        await first.close()
        await second.close()


async def test_the_third_failed_logon_drops_the_session(tmp_path):
    async with running_hub(tmp_path) as hub:
        c = await _connect(hub.addresses[0][1])
        await c.cmd("EHLO client.contoso.com")
        wrong = "AUTH PLAIN " + base64.b64encode(b"\0alice@contoso.com\0guess").decode()
        assert await c.cmd(wrong) == "535 5.7.3 Authentication unsuccessful"
        assert await c.cmd(wrong) == "535 5.7.3 Authentication unsuccessful"
        assert await c.cmd(wrong) == "421 4.7.0 Too many errors on this connection, closing transmission channel"
        assert await c.closed()


async def test_the_message_rate_per_source_is_limited(tmp_path):
    async with running_hub(tmp_path, {"receive": {"message_rate_limit": 2}}) as hub:
        port = hub.addresses[0][1]
        c = await _connect(port)
        await c.cmd("EHLO client.fabrikam.test")
        for n in range(2):
            assert await c.cmd("MAIL FROM:<john@fabrikam.test>") == "250 2.1.0 Sender OK"
            await c.cmd("RCPT TO:<alice@contoso.com>")
            assert (await data(c, make_message(message_id=f"<rate{n}@t>") + b".\r\n")).startswith("250 2.6.0")
        assert await c.cmd("MAIL FROM:<john@fabrikam.test>") == (
            "421 4.4.2 Message submission rate for this client has exceeded the configured limit")
        assert await c.closed()
        other = await _connect(port, "127.0.0.2")  # another source has its own count
        await other.cmd("EHLO other.fabrikam.test")
        assert await other.cmd("MAIL FROM:<john@fabrikam.test>") == "250 2.1.0 Sender OK"
        await other.close()


async def test_a_session_ends_at_the_connection_timeout_even_when_busy(tmp_path):
    async with running_hub(tmp_path, {"receive": {"connection_timeout": 0.5}}) as hub:
        c = await _connect(hub.addresses[0][1])
        await c.cmd("EHLO client.fabrikam.test")
        replies = []
        while True:  # keep the session busy: the inactivity timeout never fires, the session timeout does
            try:
                replies.append(await c.cmd("NOOP"))
            except ConnectionError:
                break
        assert replies[-1] == "421 4.4.1 Connection timed out"
        assert all(r == "250 2.0.0 OK" for r in replies[:-1])

