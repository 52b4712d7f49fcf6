"""Send connector settings against a real aiosmtpd server: STARTTLS and AUTH to a smart host, RequireTLS,
the per-destination connection limit, DSN parameters kept across a restart, and the drop directory (read back
through the Replay directory)."""

from __future__ import annotations

import json
import os
import ssl
import threading

from aiosmtpd.smtp import AuthResult

from dsntools import Sink, SinkServer, report_parts, send_dsn
from hubtools import PASSWORD, FakeClock, make_message, messages, run_cli, running_hub, scheduler_ticks, tracking, wait_for
from transport.receive_connector import _make_self_signed

ALICE = ("alice@contoso.com", PASSWORD)
FAST = {"queue": {"admin_poll_interval": 0.1}}  # the scheduler looks often; retries keep Exchange's intervals


def rows(hub, event: str) -> list[dict]:
    return [r for r in tracking(hub) if r["event-id"] == event]


def connector(**settings) -> dict:
    return {**FAST, "send_connectors": [{"name": "Smarthost", "address_spaces": ["*"], **settings}]}


async def send_out(hub, to: str, message_id: str, options=(), mail_options=()):
    msg = make_message(message_id=message_id, sender="alice@contoso.com", to=to)
    return await send_dsn(hub.addresses[0][1], "alice@contoso.com", {to: list(options)}, msg,
                          mail_options=list(mail_options), login=ALICE)


async def test_starttls_and_auth_to_a_smart_host(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    assert _make_self_signed(cert, key, "sink.fabrikam.test")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret")

    sink = Sink()
    with SinkServer(sink, tls_context=tls, require_starttls=True, authenticator=authenticator,
                    auth_required=True) as port:
        extra = connector(smart_hosts=[f"127.0.0.1:{port}"], require_tls=True,
                          auth={"username": "relay@contoso.com", "password": "s3cret"})
        async with running_hub(tmp_path, extra) as hub:
            await send_out(hub, "john@fabrikam.test", "<tls@contoso.com>")
            await wait_for(lambda: rows(hub, "SEND"))
            assert await hub.idle()
    [got] = sink.received
    assert got.tls and got.authenticated
    assert logins == [(b"relay@contoso.com", b"s3cret")]


async def test_require_tls_without_starttls_waits_in_retry(tmp_path):
    sink = Sink()
    with SinkServer(sink) as port:
        async with running_hub(tmp_path, connector(smart_hosts=[f"127.0.0.1:{port}"], require_tls=True)) as hub:
            await send_out(hub, "john@fabrikam.test", "<notls@contoso.com>")
            [defer, *_] = await wait_for(lambda: rows(hub, "DEFER"))
            assert "451 4.7.3 STARTTLS is required to send mail" in defer["recipient-status"]
            assert hub.store.items("status='Retry'")
    assert sink.received == []


async def test_connections_per_destination_are_limited(tmp_path):
    sink = Sink(hold=threading.Event())
    extra = connector(smart_hosts=["127.0.0.1:{port}"], max_connections_per_domain=2, max_messages_per_connection=1)
    with SinkServer(sink) as port:
        extra["send_connectors"][0]["smart_hosts"] = [f"127.0.0.1:{port}"]
        async with running_hub(tmp_path, extra) as hub:
            for i in range(5):
                await send_out(hub, "john@fabrikam.test", f"<lim{i}@contoso.com>")
            await wait_for(lambda: sink.in_data == 2)
            await wait_for(lambda: hub.scheduler.queues["Smarthost"].feed.qsize() == 3)
            sink.hold.set()
            await wait_for(lambda: len(rows(hub, "SEND")) == 5)
            assert await hub.idle()
    assert sink.peak == 2  # never more than max_connections_per_domain at once
    assert len(sink.sessions) == 5  # one message per connection (max_messages_per_connection: 1)


async def test_dsn_parameters_survive_a_restart(tmp_path):
    sink = Sink(rcpt_replies={"ghost@fabrikam.test": "451 4.3.0 Later"})
    with SinkServer(sink) as port:
        extra = connector(smart_hosts=[f"127.0.0.1:{port}"])
        clock = FakeClock()  # stands still: the retry waits for `queue retry`
        async with running_hub(tmp_path, extra, clock=clock) as hub:
            await send_out(hub, "ghost@fabrikam.test", "<keep@contoso.com>",
                           options=["NOTIFY=FAILURE", "ORCPT=rfc822;Ghost@fabrikam.test"],
                           mail_options=["RET=HDRS", "ENVID=keep-1"])
            await wait_for(lambda: hub.store.items("status='Retry'"))
        sink.rcpt_replies["ghost@fabrikam.test"] = "550 5.1.1 User unknown"
        async with running_hub(tmp_path, extra, clock=clock) as hub:
            assert "Smarthost" in hub.scheduler.queues  # reopened for the item the store holds
            assert run_cli("queue", "retry", "Smarthost", "-c", str(tmp_path / "transport.yaml")).returncode == 0
            [raw] = await wait_for(lambda: messages(hub, "alice@contoso.com"), timeout=10)
    _, _, groups, original = report_parts(raw)
    assert groups[0]["Original-Envelope-Id"] == "keep-1"
    assert groups[1]["Original-Recipient"] == "rfc822;Ghost@fabrikam.test" and groups[1]["Status"] == "5.1.1"
    assert original.get_content_type() == "text/rfc822-headers"


FAX = {"send_connectors": [{"name": "Fax", "address_spaces": ["fax.contoso.test"], "drop_directory": "drop/Fax"}]}


async def test_drop_directory_files_read_back_through_replay(tmp_path):
    async with running_hub(tmp_path, {**FAST, **FAX}) as hub:
        drop = hub.config.data_root / "drop" / "Fax"
        await send_out(hub, "5551234@fax.contoso.test", "<fax@contoso.com>", options=["NOTIFY=FAILURE"])
        [first] = await wait_for(lambda: sorted(drop.glob("*.eml")))
        data = first.read_bytes()
        assert data.startswith(b"X-Sender: <alice@contoso.com>\r\nX-Receiver: <5551234@fax.contoso.test> NOTIFY=FAILURE\r\n")
        assert b"X-CreatedBy: MSExchange15 (hub.contoso.com)\r\n" in data and b"Message-ID: <fax@contoso.com>" in data
        send = (await wait_for(lambda: rows(hub, "SEND")))[0]  # the row follows the file
        assert send["source"] == "GATEWAY" and send["connector-id"] == "Fax"
        os.rename(first, hub.config.data_root / "replay" / "fax.eml")  # a gateway hands it back
        await wait_for(lambda: any(r["source"] == "REPLAY" for r in rows(hub, "RECEIVE")))
        [again] = await wait_for(lambda: sorted(drop.glob("*.eml")))
        assert await hub.idle()
    replayed = again.read_bytes()
    assert replayed.startswith(b"X-Sender: <alice@contoso.com>\r\nX-Receiver: <5551234@fax.contoso.test> NOTIFY=FAILURE\r\n")
    assert b"Message-ID: <fax@contoso.com>" in replayed and replayed.endswith(b"Hi there.\r\n")


async def test_drop_directory_quota_holds_messages_in_retry(tmp_path):
    extra = {"queue": {"admin_poll_interval": 0.05},
             "send_connectors": [{**FAX["send_connectors"][0], "drop_directory_quota": 1000}]}
    clock = FakeClock()
    async with running_hub(tmp_path, extra, clock=clock) as hub:
        drop = hub.config.data_root / "drop" / "Fax"
        await send_out(hub, "1@fax.contoso.test", "<q1@contoso.com>")
        [first] = await wait_for(lambda: sorted(drop.glob("*.eml")))
        await send_out(hub, "2@fax.contoso.test", "<q2@contoso.com>")
        [defer, *_] = await wait_for(lambda: rows(hub, "DEFER"))
        assert defer["recipient-status"] == "452 4.3.1 Insufficient system resources (drop directory quota exceeded)"
        listed = json.loads(run_cli("queue", "list", "-c", str(tmp_path / "transport.yaml"), "--json").stdout)
        assert [q["delivery_type"] for q in listed if q["identity"].endswith("\\Fax")] == ["NonSmtpGatewayDelivery"]
        first.unlink()  # the gateway took it
        clock.advance(299)  # the next attempt is due in transient_failure_retry_interval (5 min)
        await scheduler_ticks(hub)
        assert hub.store.items("status='Retry'") and not hub.scheduler.inflight
        clock.advance(1)
        [second] = await wait_for(lambda: sorted(drop.glob("*.eml")))
        assert b"<q2@contoso.com>" in second.read_bytes()
