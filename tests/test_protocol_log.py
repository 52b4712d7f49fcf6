"""The receive protocol log: off by default; with ProtocolLoggingLevel Verbose every command and reply of a
session in Exchange's SmtpReceive format, AUTH credentials masked, message data only as its size."""

from __future__ import annotations

import base64

from hubtools import PASSWORD, RawSmtp, data, make_message, running_hub, wait_for
from transport.core.logfile import log_files, read_rows
from transport.core.protocol_log import FIELDS


def rows(hub) -> list[dict[str, str]]:
    folder = hub.config.data_root / "logs" / "ProtocolLog" / "SmtpReceive"
    return [r for path in log_files(folder, "RECV") for r in read_rows(path, FIELDS)]


async def test_verbose_connector_logs_the_session(tmp_path):
    async with running_hub(tmp_path, {"receive": {"protocol_logging_level": "Verbose", "name": "Frontend"}}) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1])
        await c.cmd("EHLO client.fabrikam.test")
        plain = base64.b64encode(f"\0alice@contoso.com\0{PASSWORD}".encode()).decode()
        assert (await c.cmd(f"AUTH PLAIN {plain}")).startswith("235")
        await c.cmd("MAIL FROM:<alice@contoso.com>")
        await c.cmd("RCPT TO:<bob@contoso.com>")
        msg = make_message()
        assert (await data(c, msg + b".\r\n")).startswith("250 2.6.0")
        await c.cmd("QUIT")
        await c.close()
        got = await wait_for(lambda: [r for r in rows(hub) if r["event"] == "-"] and rows(hub))
    assert [r["sequence-number"] for r in got] == [str(n) for n in range(len(got))]
    assert {r["connector-id"] for r in got} == {"Frontend"} and len({r["session-id"] for r in got}) == 1
    assert got[0]["event"] == "+" and got[0]["remote-endpoint"].startswith("127.0.0.1:")
    flow = [(r["event"], r["data"]) for r in got[1:]]
    assert flow[0][0] == ">" and flow[0][1].startswith("220 hub.contoso.com Microsoft ESMTP MAIL Service ready")
    assert ("<", "EHLO client.fabrikam.test") in flow and (">", "250-hub.contoso.com Hello [127.0.0.1]") in flow
    assert ("<", "AUTH PLAIN ****") in flow and not any(plain in d for _, d in flow)
    assert ("<", "RCPT TO:<bob@contoso.com>") in flow and (">", "250 2.1.5 Recipient OK") in flow
    info = next(r for r in got if r["event"] == "*")
    assert info["context"] == f"message data received ({len(msg) + 3} bytes)"
    assert not any("Hi there" in d for _, d in flow)  # no message content
    assert got[-1]["event"] == "-" and flow[-2] == (">", "221 2.0.0 Service closing transmission channel")


async def test_off_by_default(tmp_path):
    async with running_hub(tmp_path) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1])
        await c.cmd("QUIT")
        await c.close()
        assert await hub.idle()
        assert not (hub.config.data_root / "logs" / "ProtocolLog").exists()
