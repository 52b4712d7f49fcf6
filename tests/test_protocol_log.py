"""The protocol logs: off by default; with ProtocolLoggingLevel Verbose every command and reply of a receive
connector's sessions in Exchange's SmtpReceive format, and of a send connector's in SmtpSend format, AUTH
credentials masked, message data only as its size."""

from __future__ import annotations

import base64

from aiosmtpd.smtp import AuthResult

from dsntools import Sink, SinkServer, send_dsn
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


async def test_verbose_send_connector_logs_its_sessions(tmp_path):
    """SmtpSend: the connect, each command the hub sends and each reply line, AUTH masked, data only as its size."""
    sink = Sink()
    with SinkServer(sink, auth_require_tls=False, authenticator=lambda *args: AuthResult(success=True)) as port:
        extra = {"send_connectors": [{"name": "Smarthost", "smart_hosts": [f"127.0.0.1:{port}"],
                                      "protocol_logging_level": "Verbose",
                                      "auth": {"username": "relay@contoso.com", "password": "s3cret-pw"}}]}
        async with running_hub(tmp_path, extra) as hub:
            msg = make_message(message_id="<sent@contoso.com>", sender="alice@contoso.com", to="john@fabrikam.test")
            await send_dsn(hub.addresses[0][1], "alice@contoso.com", {"john@fabrikam.test": []}, msg,
                           login=("alice@contoso.com", PASSWORD))
            await wait_for(lambda: sink.received)
            assert await hub.idle()
    folder = tmp_path / "data" / "logs" / "ProtocolLog" / "SmtpSend"
    got = [r for path in log_files(folder, "SEND") for r in read_rows(path, FIELDS)]
    assert {r["connector-id"] for r in got} == {"Smarthost"} and len({r["session-id"] for r in got}) == 1
    assert got[0]["event"] == "+" and got[0]["remote-endpoint"] == f"127.0.0.1:{port}"
    assert got[-1]["event"] == "-"  # the connection is closed when the hub stops
    flow = [(r["event"], r["data"]) for r in got[1:-1]]
    assert flow[0][0] == "<" and flow[0][1].startswith("220 ")
    assert (">", "EHLO hub.contoso.com") in flow and (">", "RCPT TO:<john@fabrikam.test>") in flow
    assert any(e == ">" and d.startswith("MAIL FROM:<alice@contoso.com>") for e, d in flow)
    assert ("<", "250 2.1.5 Recipient OK") in flow and ("<", "250 2.6.0 <sink> Queued mail for delivery") in flow
    assert any(e == ">" and d.startswith("AUTH ") and d.endswith("****") for e, d in flow)
    assert not any("s3cret-pw" in d or "czNjcmV0" in d for _, d in flow)  # neither the password nor its base64
    assert any(e == "*" and d.endswith(" bytes of message data") for e, d in flow)
    assert not any("Hi there" in d for _, d in flow)  # no message content
