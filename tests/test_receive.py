"""SMTP receive over a real socket: Exchange's replies, the connector's limits, AUTH, STARTTLS, the header
firewall, and protocol-exact DATA handling (dot-stuffing, SMTP smuggling, pipelining)."""

from __future__ import annotations

import asyncio
import re
import smtplib

import pytest

from hubtools import (
    PASSWORD, RawSmtp, data, header_value, make_message, messages, raw_session, running_hub, send, tracking, wait_for,
)


# -- greeting and sequence --------------------------------------------------------------------------------


async def test_banner_and_ehlo_keywords(port):
    c = await RawSmtp.connect(port)
    assert re.fullmatch(r"220 hub\.contoso\.com Microsoft ESMTP MAIL Service ready at .+ GMT", c.banner)
    ehlo = (await c.cmd("EHLO client.fabrikam.test")).splitlines()
    assert ehlo[0] == "250-hub.contoso.com Hello [127.0.0.1]"
    keywords = {line[4:] for line in ehlo[1:]}
    assert {"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "AUTH LOGIN PLAIN"} <= keywords
    assert f"SIZE {36 * 1024 * 1024}" in keywords
    assert "STARTTLS" not in keywords  # tls.enabled is false in these tests
    assert await c.cmd("QUIT") == "221 2.0.0 Service closing transmission channel"
    assert await c.closed()


async def test_command_sequence_errors(port):
    c = await RawSmtp.connect(port)
    assert await c.cmd("MAIL FROM:<john@fabrikam.test>") == "503 5.5.2 Send hello first"
    assert (await c.cmd("HELO client.fabrikam.test")) == "250 hub.contoso.com Hello [127.0.0.1]"
    assert await c.cmd("RCPT TO:<alice@contoso.com>") == "503 5.5.2 Need mail command"
    assert await c.cmd("DATA") == "503 5.5.2 Need mail command"
    assert await c.cmd("MAIL FROM:<john@fabrikam.test>") == "250 2.1.0 Sender OK"
    assert await c.cmd("MAIL FROM:<john@fabrikam.test>") == "503 5.5.2 Sender already specified"
    await c.close()


async def test_rset_forgets_the_transaction(port):
    c = await raw_session(port)
    assert await c.cmd("RSET") == "250 2.0.0 Resetting"
    assert await c.cmd("DATA") == "503 5.5.2 Need mail command"
    assert await c.cmd("MAIL FROM:<>") == "250 2.1.0 Sender OK"  # the null reverse path is allowed
    assert await c.cmd("DATA") == "503 5.5.2 Need rcpt command"
    await c.close()


async def test_too_many_protocol_errors_closes_with_421(tmp_path):
    async with running_hub(tmp_path, {"receive": {"max_protocol_errors": 3}}) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1])
        assert (await c.cmd("MAIL FROM:<a@b.test>")).startswith("503 5.5.2")
        assert (await c.cmd("RCPT TO:<a@b.test>")).startswith("503 5.5.2")
        assert await c.cmd("DATA") == "421 4.7.0 Too many errors on this connection, closing transmission channel"
        assert await c.closed()


async def test_unrecognised_mail_parameter_and_bad_size(port):
    c = await RawSmtp.connect(port)
    await c.cmd("EHLO client.fabrikam.test")
    assert await c.cmd("MAIL FROM:<john@fabrikam.test> FOO=BAR") == "501 5.5.4 Unrecognized parameter"
    assert await c.cmd("MAIL FROM:<john@fabrikam.test> SIZE=lots") == "501 5.5.4 Invalid SIZE parameter"
    assert await c.cmd("MAIL FROM:<john@fabrikam.test> SIZE=100 BODY=8BITMIME") == "250 2.1.0 Sender OK"
    assert await c.cmd("RCPT TO:<alice@contoso.com> NOTIFY=SUCCESS,FAILURE") == "250 2.1.5 Recipient OK"
    assert await c.cmd("RCPT TO:<bob@contoso.com> XFOO=1") == "501 5.5.4 Unrecognized parameter"
    await c.close()


# -- relay and AUTH -----------------------------------------------------------------------------------------


async def test_anonymous_relay_is_refused(hub, port):
    c = await RawSmtp.connect(port)
    await c.cmd("EHLO client.fabrikam.test")
    await c.cmd("MAIL FROM:<john@fabrikam.test>")
    assert await c.cmd("RCPT TO:<someone@fabrikam.test>") == "550 5.7.1 Unable to relay"
    assert await c.cmd("RCPT TO:<alice@CONTOSO.com>") == "250 2.1.5 Recipient OK"  # domains compare case-blind
    await c.close()


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_authenticated_session_may_relay(hub, port, mechanism):
    msg = make_message(message_id="<relay-%s@contoso.com>" % mechanism.lower(), sender="alice@contoso.com",
                       to="someone@fabrikam.test")
    refused, reply = await send(port, "alice@contoso.com", ["someone@fabrikam.test"], msg,
                                login=("alice@contoso.com", PASSWORD), mechanism=mechanism)
    assert refused == {}
    assert reply[0] == 250 and reply[1].startswith(b"2.6.0 <relay-")
    assert await hub.idle(), "the hub did not settle"
    rows = [r for r in tracking(hub) if r["message-id"] == f"<relay-{mechanism.lower()}@contoso.com>"]
    receive = [r for r in rows if r["event-id"] == "RECEIVE"]
    assert receive and receive[0]["recipient-address"] == "someone@fabrikam.test"


async def test_wrong_password_is_refused_and_relay_stays_closed(port):
    c = await RawSmtp.connect(port)
    await c.cmd("EHLO client.fabrikam.test")
    import base64

    blob = base64.b64encode(b"\0alice@contoso.com\0wrong").decode()
    assert await c.cmd(f"AUTH PLAIN {blob}") == "535 5.7.3 Authentication unsuccessful"
    blob = base64.b64encode(b"\0carol@contoso.com\0").decode()  # carol has no password: cannot log in
    assert await c.cmd(f"AUTH PLAIN {blob}") == "535 5.7.3 Authentication unsuccessful"
    await c.cmd("MAIL FROM:<alice@contoso.com>")
    assert await c.cmd("RCPT TO:<someone@fabrikam.test>") == "550 5.7.1 Unable to relay"
    await c.close()


async def test_auth_login_exchange_by_hand(port):
    import base64

    c = await RawSmtp.connect(port)
    await c.cmd("EHLO client.fabrikam.test")
    assert (await c.cmd("AUTH LOGIN")).startswith("334 ")  # the user name challenge
    assert (await c.cmd(base64.b64encode(b"Bob@Contoso.com").decode())).startswith("334 ")
    assert await c.cmd(base64.b64encode(PASSWORD.encode()).decode()) == "235 2.7.0 Authentication successful"
    await c.cmd("MAIL FROM:<bob@contoso.com>")
    assert await c.cmd("RCPT TO:<someone@fabrikam.test>") == "250 2.1.5 Recipient OK"
    await c.close()


async def test_authenticated_message_is_stamped_internal(hub, port):
    msg = make_message(message_id="<auth-stamp@contoso.com>", sender="bob@contoso.com")
    await send(port, "bob@contoso.com", ["alice@contoso.com"], msg, login=("bob@contoso.com", PASSWORD))
    assert await hub.idle(), "the hub did not settle"
    [raw] = messages(hub, "alice@contoso.com")
    assert header_value(raw, "X-MS-Exchange-Organization-AuthAs") == "Internal"
    assert header_value(raw, "X-Originating-IP") == "[127.0.0.1]"


# -- limits ---------------------------------------------------------------------------------------------------


async def test_size_parameter_over_the_limit_is_refused_at_mail_from(tmp_path):
    async with running_hub(tmp_path, {"receive": {"max_message_size": "10KB"}}) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1])
        ehlo = await c.cmd("EHLO client.fabrikam.test")
        assert "250-SIZE 10240" in ehlo.splitlines()
        assert await c.cmd("MAIL FROM:<john@fabrikam.test> SIZE=10241") == \
            "552 5.3.4 Message size exceeds fixed maximum message size"
        assert await c.cmd("MAIL FROM:<john@fabrikam.test> SIZE=10240") == "250 2.1.0 Sender OK"
        await c.close()


async def test_oversized_data_is_refused_and_the_session_goes_on(tmp_path):
    async with running_hub(tmp_path, {"receive": {"max_message_size": "10KB"}}) as hub:
        port = hub.addresses[0][1]
        c = await raw_session(port)
        big = make_message(message_id="<big@fabrikam.test>", body="x" * 76 + "\r\n") + (b"y" * 76 + b"\r\n") * 200
        assert await data(c, big + b".\r\n") == "552 5.3.4 Message size exceeds fixed maximum message size"
        # the transaction is over, the session is not
        assert await c.cmd("MAIL FROM:<john@fabrikam.test>") == "250 2.1.0 Sender OK"
        assert await c.cmd("RCPT TO:<alice@contoso.com>") == "250 2.1.5 Recipient OK"
        reply = await data(c, make_message(message_id="<small@fabrikam.test>") + b".\r\n")
        assert reply.startswith("250 2.6.0 <small@fabrikam.test>")
        await c.close()
        assert await hub.idle(), "the hub did not settle"
        got = messages(hub, "alice@contoso.com")
        assert len(got) == 1 and b"<small@fabrikam.test>" in got[0]
        # smtplib announces SIZE at MAIL FROM: refused there
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            await send(port, "john@fabrikam.test", ["alice@contoso.com"], big, mail_options=(f"SIZE={len(big)}",))
        assert refused.value.smtp_code == 552


async def test_too_many_recipients(tmp_path):
    async with running_hub(tmp_path, {"receive": {"max_recipients_per_message": 2}}) as hub:
        c = await raw_session(hub.addresses[0][1], recipients=("alice@contoso.com", "bob@contoso.com"))
        assert await c.cmd("RCPT TO:<carol@contoso.com>") == "452 4.5.3 Too many recipients"
        reply = await data(c, make_message(message_id="<many@fabrikam.test>") + b".\r\n")
        assert reply.startswith("250 2.6.0")
        await c.close()
        assert await hub.idle(), "the hub did not settle"
        assert len(messages(hub, "alice@contoso.com")) == 1
        assert len(messages(hub, "bob@contoso.com")) == 1
        assert messages(hub, "carol@contoso.com") == []


async def test_header_size_limit(tmp_path):
    async with running_hub(tmp_path, {"receive": {"max_header_size": "1KB"}}) as hub:
        c = await raw_session(hub.addresses[0][1])
        headers = "".join(f"X-Filler-{i}: {'v' * 60}\r\n" for i in range(20))
        msg = make_message(message_id="<hdr@fabrikam.test>", extra_headers=headers)
        assert await data(c, msg + b".\r\n") == "552 5.3.4 Header size exceeds fixed maximum size"
        # a small header block with a large body is fine
        await c.cmd("MAIL FROM:<john@fabrikam.test>")
        await c.cmd("RCPT TO:<alice@contoso.com>")
        ok = make_message(message_id="<body@fabrikam.test>", body="z" * 70 + "\r\n") + b"z" * 4000 + b"\r\n"
        assert (await data(c, ok + b".\r\n")).startswith("250 2.6.0")
        await c.close()
        assert await hub.idle(), "the hub did not settle"
        assert len(messages(hub, "alice@contoso.com")) == 1


async def test_hop_count_exceeded(hub, port):
    c = await raw_session(port)
    received = "".join(f"Received: from hop{i}.test by hop{i + 1}.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                       for i in range(30))
    msg = received.encode() + make_message(message_id="<loop@fabrikam.test>")
    assert await data(c, msg + b".\r\n") == "554 5.4.6 Hop count exceeded - possible mail loop"
    await c.close()
    assert await hub.idle(), "the hub did not settle"
    assert messages(hub, "alice@contoso.com") == []


# -- DATA: dot-stuffing, smuggling, pipelining -----------------------------------------------------------------


async def test_dot_stuffing_is_undone(hub, port):
    c = await raw_session(port)
    body = b"first\r\n..leading dot\r\n...two dots\r\n.\r\n"
    head = b"Subject: dots\r\nMessage-ID: <dots@fabrikam.test>\r\n\r\n"
    assert (await data(c, head + body)).startswith("250 2.6.0 <dots@fabrikam.test>")
    await c.close()
    assert await hub.idle(), "the hub did not settle"
    [raw] = messages(hub, "alice@contoso.com")
    assert raw.endswith(b"\r\n\r\nfirst\r\n.leading dot\r\n..two dots\r\n")


async def test_empty_message_body(hub, port):
    c = await raw_session(port)
    assert (await data(c, b".\r\n")).startswith("250 2.6.0")
    await c.close()
    assert await hub.idle(), "the hub did not settle"
    [raw] = messages(hub, "alice@contoso.com")
    assert header_value(raw, "Message-ID")  # even an empty message gets one


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n"],
                         ids=["LF.LF", "CRLF.LF", "LF.CRLF", "CR.CRLF"])
async def test_smuggling_bare_line_endings_do_not_end_data(hub, port, fake_end):
    c = await raw_session(port)
    smuggled = (b"MAIL FROM:<evil@fabrikam.test>\r\nRCPT TO:<bob@contoso.com>\r\nDATA\r\n"
                b"Subject: smuggled\r\n\r\nsmuggled body\r\n")
    msg = make_message(message_id="<carrier@fabrikam.test>", body="carrier") + fake_end + smuggled + b".\r\n"
    assert (await data(c, msg)).startswith("250 2.6.0 <carrier@fabrikam.test>")
    # had the server taken the fake end for real, the next reply would answer the smuggled MAIL FROM
    assert await c.cmd("QUIT") == "221 2.0.0 Service closing transmission channel"
    assert await hub.idle(), "the hub did not settle"
    [raw] = messages(hub, "alice@contoso.com")
    assert fake_end + b"MAIL FROM:<evil@fabrikam.test>" in raw
    assert messages(hub, "bob@contoso.com") == []


async def test_pipelined_transaction(hub, port):
    c = await RawSmtp.connect(port)
    await c.cmd("EHLO client.fabrikam.test")
    await c.write(b"MAIL FROM:<john@fabrikam.test>\r\nRCPT TO:<alice@contoso.com>\r\n"
                  b"RCPT TO:<nobody@fabrikam.test>\r\nRCPT TO:<bob@contoso.com>\r\nDATA\r\n")
    assert await c.reply() == "250 2.1.0 Sender OK"
    assert await c.reply() == "250 2.1.5 Recipient OK"
    assert await c.reply() == "550 5.7.1 Unable to relay"
    assert await c.reply() == "250 2.1.5 Recipient OK"
    assert (await c.reply()).startswith("354 ")
    await c.write(make_message(message_id="<pipe@fabrikam.test>") + b".\r\nQUIT\r\n")
    assert (await c.reply()).startswith("250 2.6.0 <pipe@fabrikam.test>")
    assert await c.reply() == "221 2.0.0 Service closing transmission channel"
    assert await hub.idle(), "the hub did not settle"
    assert len(messages(hub, "alice@contoso.com")) == 1 and len(messages(hub, "bob@contoso.com")) == 1


async def test_two_messages_in_one_session(hub, port):
    c = await raw_session(port)
    assert (await data(c, make_message(message_id="<one@fabrikam.test>") + b".\r\n")).startswith("250 2.6.0")
    await c.cmd("MAIL FROM:<john@fabrikam.test>")
    await c.cmd("RCPT TO:<bob@contoso.com>")
    assert (await data(c, make_message(message_id="<two@fabrikam.test>") + b".\r\n")).startswith("250 2.6.0")
    await c.close()
    assert await hub.idle(), "the hub did not settle"
    assert b"<one@fabrikam.test>" in messages(hub, "alice@contoso.com")[0]
    assert b"<two@fabrikam.test>" in messages(hub, "bob@contoso.com")[0]
    assert messages(hub, "alice@contoso.com")[0].count(b"<two@") == 0


# -- what the hub adds and strips -------------------------------------------------------------------------


async def test_message_without_message_id_gets_one(hub, port):
    _, reply = await send(port, "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id=None))
    assert await hub.idle(), "the hub did not settle"
    [raw] = messages(hub, "alice@contoso.com")
    mid = header_value(raw, "Message-ID")
    assert mid and re.fullmatch(r"<[0-9a-f-]{36}@hub\.contoso\.com>", mid)
    assert reply[1].startswith(f"2.6.0 {mid} [InternalId=".encode())
    assert any(r["message-id"] == mid and r["event-id"] == "DELIVER" for r in tracking(hub))


async def test_received_header_and_organization_stamps(hub, port):
    await send(port, "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<stamps@fabrikam.test>"))
    assert await hub.idle(), "the hub did not settle"
    [raw] = messages(hub, "alice@contoso.com")
    from transport.core.headers import parse_headers

    names = [h.name for h in parse_headers(raw)]
    # the Maildir copy starts with the store driver's trace, then the SMTP hop's Received
    assert names[:3] == ["Return-Path", "Received", "Received"]
    smtp_hop = parse_headers(raw)[2].value
    assert smtp_hop.startswith("from client.fabrikam.test ([127.0.0.1]) by hub.contoso.com ([127.0.0.1])"
                               " with Microsoft SMTP Server")
    assert "(TLS)" not in smtp_hop
    assert header_value(raw, "X-MS-Exchange-Organization-AuthAs") == "Anonymous"
    assert header_value(raw, "X-MS-Exchange-Organization-OriginalArrivalTime")
    assert header_value(raw, "X-Originating-IP") is None  # only for authenticated submissions
    assert raw.endswith(b"\r\n\r\nHi there.\r\n")


async def test_anonymous_client_cannot_forge_organization_headers(hub, port):
    forged = ("X-MS-Exchange-Organization-SCL: -1\r\n"
              "X-MS-Exchange-Organization-AuthAs: Internal\r\n"
              "x-ms-exchange-organization-antispam-report: IPOnAllowList\r\n")
    await send(port, "john@fabrikam.test", ["alice@contoso.com"],
               make_message(message_id="<forged@fabrikam.test>", extra_headers=forged))
    assert await hub.idle(), "the hub did not settle"
    [raw] = messages(hub, "alice@contoso.com")
    assert header_value(raw, "X-MS-Exchange-Organization-SCL") is None
    assert header_value(raw, "X-MS-Exchange-Organization-Antispam-Report") is None
    assert header_value(raw, "X-MS-Exchange-Organization-AuthAs") == "Anonymous"
    assert raw.count(b"X-MS-Exchange-Organization-AuthAs") == 1


async def test_authenticated_client_keeps_organization_headers(hub, port):
    msg = make_message(message_id="<kept@contoso.com>", sender="bob@contoso.com",
                       extra_headers="X-MS-Exchange-Organization-SCL: -1\r\n")
    await send(port, "bob@contoso.com", ["alice@contoso.com"], msg, login=("bob@contoso.com", PASSWORD))
    assert await hub.idle(), "the hub did not settle"
    [raw] = messages(hub, "alice@contoso.com")
    assert header_value(raw, "X-MS-Exchange-Organization-SCL") == "-1"


# -- STARTTLS -----------------------------------------------------------------------------------------------


async def test_starttls_with_the_self_signed_certificate_made_on_first_run(tmp_path):
    async with running_hub(tmp_path, {"receive": {"tls": {"enabled": True}}}) as hub:
        cert = hub.config.data_root / "tls" / "cert.pem"
        assert cert.read_text().startswith("-----BEGIN CERTIFICATE-----")
        port = hub.addresses[0][1]
        c = await RawSmtp.connect(port)
        assert "250-STARTTLS" in (await c.cmd("EHLO client.fabrikam.test")).splitlines()
        await c.close()
        msg = make_message(message_id="<tls@contoso.com>", sender="alice@contoso.com", to="someone@fabrikam.test")
        refused, reply = await send(port, "alice@contoso.com", ["bob@contoso.com", "someone@fabrikam.test"], msg,
                                    starttls=True, login=("alice@contoso.com", PASSWORD), mechanism="LOGIN")
        assert refused == {} and reply[0] == 250
        assert await hub.idle(), "the hub did not settle"
        [raw] = messages(hub, "bob@contoso.com")
        assert "with Microsoft SMTP Server (TLS)" in raw.decode()
        assert header_value(raw, "X-MS-Exchange-Organization-AuthAs") == "Internal"
    # the certificate is made once and reused on the next start
    before = cert.read_bytes()
    async with running_hub(tmp_path, {"receive": {"tls": {"enabled": True}}}):
        assert cert.read_bytes() == before


async def test_starttls_session_must_say_hello_again(tmp_path):
    import ssl

    async with running_hub(tmp_path, {"receive": {"tls": {"enabled": True}}}) as hub:
        port = hub.addresses[0][1]

        def client() -> tuple[int, int, str]:
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            with smtplib.SMTP("127.0.0.1", port, local_hostname="client.fabrikam.test") as s:
                s.ehlo()
                s.starttls(context=ctx)
                code, _ = s.docmd("MAIL", "FROM:<john@fabrikam.test>")
                s.ehlo()
                features = s.esmtp_features
                code2, _ = s.docmd("MAIL", "FROM:<john@fabrikam.test>")
                return code, code2, " ".join(features)

        import asyncio

        before, after, features = await asyncio.to_thread(client)
        assert before == 503 and after == 250
        assert "starttls" not in features  # not offered twice


async def test_a_botched_tls_handshake_is_one_warning_and_the_hub_serves_on(tmp_path, caplog):
    """A client that says STARTTLS and then sends no TLS (a scanner, a broken client) is the client's fault: one
    warning line without a traceback, where it used to be an ERROR with one per attempt."""
    async with running_hub(tmp_path, {"receive": {"tls": {"enabled": True}}}) as hub:
        port = hub.addresses[0][1]
        c = await RawSmtp.connect(port)
        await c.cmd("EHLO client.fabrikam.test")
        assert (await c.cmd("STARTTLS")).startswith("220")
        await c.write(b"\x16\x03\x01\x00\x05hello")  # a TLS record header, then no ClientHello
        await c.close()
        await wait_for(lambda: any("TLS negotiation" in r.getMessage() for r in caplog.records))
        [record] = [r for r in caplog.records if "TLS negotiation" in r.getMessage()]
        assert record.levelname == "WARNING" and record.exc_info is None
        assert "failed: SSLError" in record.getMessage()
        assert not [r for r in caplog.records if r.levelname == "ERROR"]
        _, reply = await send(port, "john@fabrikam.test", ["alice@contoso.com"], make_message())
        assert reply[0] == 250


async def test_auth_requires_tls_when_configured(tmp_path):
    async with running_hub(tmp_path, {"receive": {"require_tls_for_auth": True, "tls": {"enabled": True}}}) as hub:
        port = hub.addresses[0][1]
        c = await RawSmtp.connect(port)
        assert not any(line.startswith("250-AUTH") for line in (await c.cmd("EHLO client.fabrikam.test")).splitlines())
        assert (await c.cmd("AUTH PLAIN AGFsaWNlQGNvbnRvc28uY29tAFBhc3N3MHJkIQ==")).startswith("538 5.7.11")
        await c.close()
        refused, reply = await send(port, "alice@contoso.com", ["someone@fabrikam.test"],
                                    make_message(message_id="<tlsauth@contoso.com>"),
                                    starttls=True, login=("alice@contoso.com", PASSWORD))
        assert refused == {} and reply[0] == 250


# -- timeouts -----------------------------------------------------------------------------------------------


async def test_idle_session_times_out_with_451(tmp_path):
    async with running_hub(tmp_path, {"receive": {"connection_inactivity_timeout": 0.3}}) as hub:
        c = await RawSmtp.connect(hub.addresses[0][1])
        await c.cmd("EHLO client.fabrikam.test")
        assert await c.reply(timeout=3) == "451 4.7.0 Timeout waiting for client input"
        assert await c.closed()


async def test_a_slow_but_active_data_transfer_is_not_cut(tmp_path):
    import asyncio

    async with running_hub(tmp_path, {"receive": {"connection_inactivity_timeout": 0.4}}) as hub:
        c = await raw_session(hub.addresses[0][1])
        assert (await c.cmd("DATA")).startswith("354")
        await c.write(make_message(message_id="<slow@fabrikam.test>"))
        for n in range(6):  # 1.2 s in all, never more than 0.2 s without data
            await asyncio.sleep(0.2)
            await c.write(f"line {n}\r\n".encode())
        await c.write(b".\r\n")
        assert (await c.reply()).startswith("250 2.6.0 <slow@fabrikam.test>")
        await c.close()
        assert await hub.idle(), "the hub did not settle"
        [raw] = messages(hub, "alice@contoso.com")
        assert raw.endswith(b"line 5\r\n")


async def test_hop_count_just_under_the_limit_is_accepted(hub, port):
    c = await raw_session(port)
    received = "".join(f"Received: from hop{i}.test by hop{i + 1}.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                       for i in range(29))
    reply = await data(c, received.encode() + make_message(message_id="<hops@fabrikam.test>") + b".\r\n")
    assert reply.startswith("250 2.6.0")
    await c.close()


async def test_sessions_built_from_the_template_match_aiosmtpds_own_constructor(hub):
    """The per-connection fast path must set exactly what aiosmtpd's constructor sets (guards upgrades)."""
    from transport.receive import ReceiveProtocol

    template = ReceiveProtocol.template(hub.receive)
    slow, fast = ReceiveProtocol(hub.receive), ReceiveProtocol(hub.receive, template)
    assert set(vars(slow)) == set(vars(fast))
    assert {k: type(v) for k, v in vars(slow).items()} == {k: type(v) for k, v in vars(fast).items()}
    assert all(a.method.__self__ is fast for a in fast._auth_methods.values())
    assert all(m.__self__ is fast for _, m in fast._smtp_methods.items())
    assert fast._smtp_methods.functions is template._smtp_methods.functions  # shared, bound on look-up
    assert fast._smtp_methods.get("NOOP").__self__ is fast
    assert fast._smtp_methods.get("FOO") == fast._unrecognized
    assert {n for n, _ in slow._smtp_methods.items()} == {n for n, _ in fast._smtp_methods.items()} >= {"EHLO", "DATA"}
    assert fast._authenticator.__self__ is fast
    assert not set(template._settings) & set(vars(asyncio.StreamReaderProtocol(
        asyncio.StreamReader(), client_connected_cb=fast._cb_client_connected)))  # stream state is never shared


async def test_help_walks_the_command_table_and_an_unknown_verb_gets_exchanges_reply(tmp_path):
    """The command table binds a method only when a session looks it up: HELP (which walks the table) and an
    unknown verb must still be answered."""
    async with running_hub(tmp_path) as hub:
        port = hub.addresses[0][1]

        def client() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
            with smtplib.SMTP("127.0.0.1", port, local_hostname="client.fabrikam.test", timeout=10) as s:
                s.ehlo()
                return s.docmd("HELP"), s.docmd("FROB")

        import asyncio

        listing, unknown = await asyncio.to_thread(client)
        assert listing[0] == 250 and listing[1].startswith(b"Supported commands:") and b"HELP" in listing[1]
        assert unknown == (500, b"5.3.3 Unrecognized command")


async def test_a_queue_that_refuses_the_write_is_answered_451_and_nothing_is_delivered(tmp_path):
    """The queue database refuses the commit (here an SQLite trigger standing in for a full disk): the client is
    told to send again, not 250; once the database takes writes again, so does the hub."""
    async with running_hub(tmp_path) as hub:
        await hub.store.run(lambda conn: conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON messages BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"))
        port = hub.addresses[0][1]
        _, reply = await send(port, "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<r1@f.test>"))
        assert reply == (451, b"4.3.1 Insufficient system resources (queue database unavailable)")
        await hub.store.run(lambda conn: conn.execute("DROP TRIGGER refuse"))
        _, reply = await send(port, "john@fabrikam.test", ["alice@contoso.com"], make_message(message_id="<r2@f.test>"))
        assert reply[0] == 250
        await wait_for(lambda: messages(hub, "alice@contoso.com"))
        assert [header_value(m, "Message-ID") for m in messages(hub, "alice@contoso.com")] == ["<r2@f.test>"]
