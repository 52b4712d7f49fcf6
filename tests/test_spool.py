"""Large messages: the body past the spool threshold goes to a file as it arrives, is delivered byte for byte,
and the file goes away with the message (delivered, refused, removed, or never committed)."""

from __future__ import annotations

import random
import sqlite3

from hubtools import (RawSmtp, agent, header_value, make_message, messages, run_cli, running_hub, send,
                      wait_for)
from transport.spool import SPOOL_THRESHOLD, DotUnstuffer, unstuff


def _stuffed(body: bytes) -> bytes:
    """What an SMTP client sends for `body` (RFC 5321 §4.5.2), terminator not included."""
    lines = body.split(b"\r\n")
    return b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)


def test_the_stream_unstuffer_agrees_with_the_whole_block_however_the_stream_is_cut():
    rng = random.Random(7)
    alphabet = [b".", b"\r\n", b"x", b"..", b"\r", b"\n"]
    for _ in range(300):
        data = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(0, 8))))
        u = DotUnstuffer()
        out = b"".join(u.feed(data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)])) + u.flush()
        assert out == unstuff(data), (data, cuts)


def _big_body(size: int) -> bytes:
    line = b".dot-led line that must lose its first dot on the way in" + b"-" * 40
    body = b"\r\n".join(line if n % 3 == 0 else b"plain %08d " % n + b"y" * 80 for n in range(size // 100))
    return body + b"\r\n"


async def test_a_large_message_is_spooled_delivered_byte_for_byte_and_its_file_removed(tmp_path):
    async with running_hub(tmp_path) as hub:
        body = _big_body(3 * SPOOL_THRESHOLD)
        message = make_message(message_id="<big@fabrikam.test>", body="") + body
        _, reply = await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com", "bob@contoso.com"],
                              message)
        assert reply[0] == 250
        await wait_for(lambda: len(messages(hub, "alice@contoso.com")) == 1 == len(messages(hub, "bob@contoso.com")))
        for address in ("alice@contoso.com", "bob@contoso.com"):
            [copy] = messages(hub, address)
            assert copy.endswith(b"\r\n\r\n" + body)  # the dots unstuffed exactly as in the original
            assert header_value(copy, "Message-ID") == "<big@fabrikam.test>"
        await wait_for(lambda: not hub.store.items())
        spool = hub.config.data_root / "queue" / "spool"
        assert list(spool.iterdir()) == []


async def test_a_spooled_message_keeps_only_its_header_block_in_the_queue_database(tmp_path):
    async with running_hub(tmp_path, {"queue": {"durable": True}}) as hub:
        run = run_cli("queue", "suspend", "mailbox", "-c", str(tmp_path / "transport.yaml"))
        assert run.returncode == 0
        await wait_for(lambda: hub.scheduler.suspended == {"mailbox"})
        body = _big_body(2 * SPOOL_THRESHOLD)
        message = make_message(message_id="<held@fabrikam.test>", body="") + body
        _, reply = await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"], message)
        assert reply[0] == 250
        await wait_for(lambda: hub.store.items("queue='mailbox'"))
        with sqlite3.connect(hub.store.path) as db:
            [(raw_len, size, body_file)] = db.execute("SELECT length(raw), size, body_file FROM messages")
        assert raw_len < 2000 and size == raw_len + len(body)
        assert (hub.store.spool_folder / body_file).read_bytes() == body
        config = str(tmp_path / "transport.yaml")
        ident = "mailbox\\1"
        assert run_cli("message", "suspend", ident, "-c", config).returncode == 0
        exported = tmp_path / "held.eml"
        assert run_cli("message", "export", ident, "--path", str(exported), "-c", config).returncode == 0
        assert exported.read_bytes().endswith(body)
        assert run_cli("message", "remove", ident, "-c", config).returncode == 0
        assert not (hub.store.spool_folder / body_file).exists()


async def test_a_refused_or_cut_off_large_message_leaves_no_file(tmp_path):
    extra = {"agents": [agent("hubtools:Act", event="on_end_of_data", action="reject")]}
    async with running_hub(tmp_path, extra) as hub:
        spool = hub.config.data_root / "queue" / "spool"
        body = _big_body(2 * SPOOL_THRESHOLD)
        c = await RawSmtp.connect(hub.addresses[0][1])
        await c.cmd("EHLO client.fabrikam.test")
        await c.cmd("MAIL FROM:<john@fabrikam.test>")
        await c.cmd("RCPT TO:<alice@contoso.com>")
        assert (await c.cmd("DATA")).startswith("354")
        c.writer.write(make_message(body="") + _stuffed(body) + b"\r\n.\r\n")
        assert (await c.reply()).startswith("550 5.7.1")
        assert list(spool.iterdir()) == []
        await c.cmd("RSET")
        await c.cmd("MAIL FROM:<john@fabrikam.test>")
        await c.cmd("RCPT TO:<alice@contoso.com>")
        await c.cmd("DATA")
        c.writer.write(make_message(body="") + _stuffed(body)[: 3 * SPOOL_THRESHOLD // 2])  # then the client goes
        await c.writer.drain()
        c.writer.close()
        await wait_for(lambda: not hub.receive.sessions)
        assert list(spool.iterdir()) == []
