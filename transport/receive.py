"""SMTP receive: aiosmtpd's protocol engine with Exchange's replies and receive events.

aiosmtpd does the line handling, STARTTLS and the AUTH exchanges; this subclass replaces the commands whose
behaviour Exchange defines (HELO/EHLO, MAIL, RCPT, DATA, RSET, QUIT, NOOP) so that each one fires its event
through the agent pipeline, answers with Exchange's texts and enhanced status codes, and enforces the receive
connector's limits. End of DATA builds the mail item, runs OnEndOfHeaders and OnEndOfData, and answers 250 only
once the queue database has durably committed the message.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import ssl
from dataclasses import replace
from typing import Any, Awaitable, Callable, Iterator, Optional, Protocol

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, TLSSetupException, _AuthMechAttr

from .core import events as ev
from .core.config import PermissionGroup, ReceiveConnector, TransportConfig
from .core.errors import HandOverError, StoreError
from .core.events import Action, Replies, SmtpResponse
from .core.headers import header_end, date_now
from .core.mailitem import AuthAs, MailItem, Recipient, SessionInfo, Source, Spool
from .core.pipeline import Pipeline
from .connection_limits import RATE_EXCEEDED, TOO_MANY_CONNECTIONS, ConnectionLimits
from .core.sources import SubmissionPath
from .permissions import relay_refusal, submit_refusal
from .smtp_syntax import MAIL_PARAMS, RCPT_PARAMS, UNRECOGNIZED_PARAMETER, esmtp_params, parse_xclient, split_path
from .spool import SPOOL_THRESHOLD, give_back_memory, read_data

__all__ = ["Connector", "ReceiveProtocol"]

log = logging.getLogger("transport.receive")

MAX_HOP_COUNT = 30
_session_ids = itertools.count(1)


class _CommandTable:
    """aiosmtpd's table of command methods (it calls `get` and, for HELP, `items`), answering an unknown verb
    with Exchange's reply (and counting it as a protocol error) instead of aiosmtpd's own text.

    The functions are shared by every session of a connector; one is bound to its session only when the session
    looks it up: binding all of them for each connection cost more than the commands a session sends.
    """

    def __init__(self, functions: dict[str, Any], session: "ReceiveProtocol") -> None:
        self.functions = functions
        self.session = session

    def get(self, key: str, default: Any = None) -> Any:
        function = self.functions.get(key)
        return self.session._unrecognized if function is None else function.__get__(self.session)

    def items(self) -> Iterator[tuple[str, Any]]:
        return ((name, f.__get__(self.session)) for name, f in self.functions.items())


class _NoHooks:
    """aiosmtpd wants a handler object; every command it would hand over is implemented here instead."""


_NO_HOOKS = _NoHooks()


class Connector(Protocol):
    """What a session is handed: its receive connector (`transport.receive_connector` builds it)."""

    settings: ReceiveConnector
    config: TransportConfig
    submission: SubmissionPath
    pipeline: Pipeline
    sessions: set["ReceiveProtocol"]
    limits: ConnectionLimits
    draining: bool
    tls: ssl.SSLContext | None
    template: "ReceiveProtocol"
    tarpit: Callable[[float], Awaitable[None]]

    def choose(self, local: tuple[str, int], remote_ip: str) -> "Connector | None":
        """The connector sharing this listening address that serves the client (None: none does)."""

    def xclient_allowed(self, ip: str) -> bool:
        """Whether this (real) client may use XCLIENT."""


class ReceiveProtocol(SMTP):
    """One SMTP session on the receive connector."""

    def __init__(self, connector: Connector, template: "ReceiveProtocol | None" = None) -> None:
        rc = connector.settings
        tls_context = connector.tls
        loop = asyncio.get_running_loop()
        if template is None:
            super().__init__(
                _NO_HOOKS,
                data_size_limit=rc.max_message_size,
                enable_SMTPUTF8=True,
                hostname=rc.fqdn,
                tls_context=tls_context,
                timeout=rc.connection_inactivity_timeout,
                auth_require_tls=rc.require_tls_for_auth and tls_context is not None,
                auth_exclude_mechanism=[m for m in ("PLAIN", "LOGIN") if m not in rc.auth_mechanisms
                                        or not rc.grants(PermissionGroup.EXCHANGE_USERS)],
                authenticator=self._check_password,  # not `_authenticate`: that name is aiosmtpd's own method
                loop=loop,
            )
        else:
            # aiosmtpd's constructor introspects the instance (inspect.getmembers, dir) on every connection,
            # about 0.3 ms; what it finds is the same for every session of a hub, so copy it from a template.
            asyncio.StreamReaderProtocol.__init__(
                self, asyncio.StreamReader(loop=loop, limit=self.line_length_limit),
                client_connected_cb=self._cb_client_connected, loop=loop)
            self.__dict__.update(template._settings)
            self._authenticator = self._check_password
            self._auth_methods = {name: _AuthMechAttr(getattr(self, a.method.__name__), True) if a.is_builtin else a
                                  for name, a in template._auth_methods.items()}
        functions = ({name: m.__func__ for name, m in self._smtp_methods.items()} if template is None
                     else template._smtp_methods.functions)
        self._smtp_methods = _CommandTable(functions, self)
        self.connector = connector
        self.settings = rc
        self.submission = connector.submission
        self.pipeline = connector.pipeline
        self.info = SessionInfo(connector=rc.name, antispam_bypass=rc.grants(PermissionGroup.EXCHANGE_SERVERS))
        self.xclient_helo = ""  # a HELO name set by XCLIENT, which later EHLOs do not replace
        self.mail_from: str | None = None
        self.mail_params: dict[str, str] = {}
        self.rcpts: list[Recipient] = []
        self.errors = 0
        self.logon_failures = -1  # -1 until the session tries AUTH: replies before that are not counted

    _REBOUND = frozenset({"_authenticator", "_auth_methods", "_smtp_methods", "info", "mail_from", "mail_params",
                          "rcpts", "errors", "logon_failures", "xclient_helo"})

    @classmethod
    def template(cls, connector: Connector) -> "ReceiveProtocol":
        """Built once per connector the slow way; sessions copy its settings (see __init__)."""
        t = cls(connector)
        stream_state = set(vars(asyncio.StreamReaderProtocol(
            asyncio.StreamReader(), client_connected_cb=t._cb_client_connected, loop=t.loop)))
        t._settings = {k: v for k, v in vars(t).items() if k not in stream_state and k not in cls._REBOUND}
        return t

    # -- connection ---------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Hand the session to the connector sharing this binding whose remote IP ranges fit the client
        best (Exchange's connector selection); a client no connector serves is dropped."""
        peer, sock = transport.get_extra_info("peername"), transport.get_extra_info("sockname")
        chosen = self.connector.choose(tuple(sock[:2]), str(peer[0])) if peer and sock else self.connector
        if chosen is not None and chosen is not self.connector:
            ReceiveProtocol.__init__(self, chosen, chosen.template)
        super().connection_made(transport)
        if chosen is None:
            log.info("no receive connector serves %s on %s:%s; disconnected", peer[0], *sock[:2])
            transport.abort()

    async def _handle_client(self) -> None:
        assert self.transport is not None
        peer = self.transport.get_extra_info("peername") or ("", 0)
        sock = self.transport.get_extra_info("sockname") or ("", 0)
        info = self.info
        info.session_id = f"{os.getpid():x}{next(_session_ids):08X}"
        info.client_ip, info.client_port = str(peer[0]), int(peer[1])
        info.server_ip, info.server_port = str(sock[0]), int(sock[1])
        info.internal = self.submission.is_internal(info.client_ip)
        limits = self.connector.limits
        if not limits.admit(info.client_ip):
            await self.reply(TOO_MANY_CONNECTIONS)
            self._close()
            return
        self.connector.sessions.add(self)
        session_timer = self.loop.call_later(self.settings.connection_timeout, self._session_timed_out)
        try:
            if self.pipeline.has("on_connect"):
                event = await self.pipeline.run(ev.ConnectEvent(info))
                if event.action in (Action.REJECT, Action.DISCONNECT):
                    if event.response is not None:
                        await self.push(str(event.response))
                    self.transport.close()
                    return
            if self.connector.draining:
                await self.reply(Replies.SHUTTING_DOWN)
                self.transport.close()
                return
            self.__ident__ = f"Microsoft ESMTP MAIL Service ready at {date_now()}"
            await super()._handle_client()
        finally:
            session_timer.cancel()
            limits.release(info.client_ip)
            self.connector.sessions.discard(self)

    def _session_timed_out(self) -> None:
        """ConnectionTimeout: the session has lasted as long as a session may, busy or not."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(f"{Replies.CONNECTION_TIMEOUT}\r\n".encode())
        self._close()

    def connection_lost(self, error: Optional[Exception]) -> None:
        super().connection_lost(error)
        if self.pipeline.has("on_disconnect"):
            asyncio.ensure_future(self.pipeline.run(ev.DisconnectEvent(self.info)))

    def data_received(self, data: bytes) -> None:
        """Any bytes from the client count as activity (aiosmtpd only restarts the timer per command,
        so a DATA transfer longer than ConnectionInactivityTimeout would be cut mid-stream)."""
        super().data_received(data)
        self._reset_timeout()

    def _reset_timeout(self, duration: float | None = None) -> None:
        """Move the inactivity deadline. One timer per session, re-armed only when it fires early: aiosmtpd
        cancels and re-creates a timer for every command, which costs more than the command itself."""
        self._deadline = self.loop.time() + (duration or self._timeout_duration)
        if self._timeout_handle is None or self._timeout_handle.cancelled():
            self._timeout_handle = self.loop.call_at(self._deadline, self._timeout_cb)

    def _timeout_cb(self) -> None:
        if self.loop.time() < self._deadline:  # there was activity since the timer was set
            self._timeout_handle = self.loop.call_at(self._deadline, self._timeout_cb)
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(f"{Replies.IDLE_TIMEOUT}\r\n".encode())
        super()._timeout_cb()

    async def handle_exception(self, error: Exception) -> str:
        """A bug while handling a command: log it, answer a transient error, keep serving. A TLS handshake the
        client broke off or botched is the client's doing: one line, no traceback (the session then ends)."""
        if isinstance(error, TLSSetupException):
            cause = error.__cause__
            log.warning("session %s: TLS negotiation with %s failed: %s", self.info.session_id, self.info.client_ip,
                        f"{type(cause).__name__}: {cause}" if cause is not None else "no reason given")
        else:
            log.error("session %s: %s: %s", self.info.session_id, type(error).__name__, error, exc_info=error)
        return "451 4.7.0 Temporary server error. Please try again later"

    async def push(self, status: Any) -> None:
        if self.logon_failures >= 0 and isinstance(status, str) and status.startswith("535"):
            status = await self._logon_failed(status)
        await super().push(status)
        if isinstance(status, str) and status[:1] in ("4", "5") and self.pipeline.has("on_reject"):
            await self.pipeline.run(ev.RejectEvent(self.info, SmtpResponse.parse(status), ""))

    async def reply(self, response: SmtpResponse) -> None:
        """Send a reply; 5.1.1 replies to anonymous sessions wait TarpitInterval first (directory harvesting)."""
        if response.enhanced == "5.1.1" and self.settings.tarpit_interval and not self.info.authenticated:
            await self.connector.tarpit(self.settings.tarpit_interval)
        await self.push(str(response))

    async def _command_event(self, event: ev.CommandEvent) -> bool:
        """Run a command event; True when an agent rejected the command or dropped the session."""
        if not self.pipeline.has(event.name):
            return False
        await self.pipeline.run(event)
        if event.action is Action.DISCONNECT:
            self._close()
            return True
        if event.action is Action.REJECT and event.response is not None:
            await self.reply(event.response)
            return True
        return False

    @property
    def busy(self) -> bool:
        """In a mail transaction (MAIL accepted, the message not yet answered): shutdown waits for it."""
        return self.mail_from is not None

    def shut_down(self) -> None:
        """Hub shutdown: tell the client, then close."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(f"{Replies.SHUTTING_DOWN}\r\n".encode())
        self._close()

    async def _unrecognized(self, arg: str | None) -> None:
        await self._protocol_error(Replies.UNRECOGNIZED)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def _protocol_error(self, response: SmtpResponse) -> None:
        """Count an error; past MaxProtocolErrors the session is closed with 421 4.7.0."""
        self.errors += 1
        if self.errors >= self.settings.max_protocol_errors:
            await self.reply(Replies.TOO_MANY_ERRORS)
            self._close()
        else:
            await self.reply(response)

    def _reset(self) -> None:
        self.mail_from = None
        self.mail_params = {}
        self.rcpts = []

    # -- HELO / EHLO --------------------------------------------------------------------------------
    async def smtp_HELO(self, hostname: str) -> None:
        await self._hello(hostname, esmtp=False)

    async def smtp_EHLO(self, hostname: str) -> None:
        await self._hello(hostname, esmtp=True)

    async def _hello(self, hostname: str | None, esmtp: bool) -> None:
        verb = "EHLO" if esmtp else "HELO"
        if not hostname:
            await self._protocol_error(SmtpResponse(501, "5.5.4", f"Invalid domain name ({verb} needs one)"))
            return
        hostname = self.xclient_helo or hostname
        event_cls = ev.EhloEvent if esmtp else ev.HeloEvent
        if await self._command_event(event_cls(self.info, hostname)):
            return
        self._reset()
        assert self.session is not None
        self.session.host_name = hostname
        self.session.extended_smtp = esmtp
        self.info.helo, self.info.esmtp = hostname, esmtp
        greeting = f"{self.hostname} Hello [{self.info.client_ip}]"
        if not esmtp:
            await self.push(f"250 {greeting}")
            return
        lines = [greeting, f"SIZE {self.data_size_limit}", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES"]
        if self.tls_context and not self._tls_protocol:
            lines.append("STARTTLS")
        if self._auth_methods and (not self._auth_require_tls or self._tls_protocol):
            lines.append("AUTH " + " ".join(sorted(self._auth_methods)))
        if self._xclient_allowed:
            lines.append("XCLIENT ADDR NAME HELO PROTO")
        lines += ["8BITMIME", "SMTPUTF8"]
        await self.push("\r\n".join(f"250-{line}" for line in lines[:-1]) + f"\r\n250 {lines[-1]}")

    # -- STARTTLS / AUTH ----------------------------------------------------------------------------
    async def smtp_STARTTLS(self, arg: str) -> None:
        if await self._command_event(ev.StartTlsEvent(self.info)):
            return
        await super().smtp_STARTTLS(arg)
        self.info.tls = self._tls_protocol is not None
        self._reset()
        self.info.helo = ""

    async def smtp_AUTH(self, arg: str) -> None:
        mechanism = (arg or "").split(" ")[0].upper()
        if await self._command_event(ev.AuthEvent(self.info, mechanism)):
            return
        self.logon_failures = max(self.logon_failures, 0)  # from now on a 535 counts (see push)
        await super().smtp_AUTH(arg)
        assert self.session is not None
        if self.session.authenticated:
            login = getattr(self.session.auth_data, "login", b"")
            user = login.decode("utf-8", "replace") if isinstance(login, bytes) else str(login)
            self.info.auth_user, self.info.auth_mechanism = user.lower(), mechanism
            self.info.auth_as = AuthAs.INTERNAL

    async def _logon_failed(self, reply: str) -> str:
        """A failed AUTH: its 535 waits AuthTarpitInterval; the MaxLogonFailures-th ends the session instead."""
        self.logon_failures += 1
        if self.settings.auth_tarpit_interval:
            await asyncio.sleep(self.settings.auth_tarpit_interval)
        if self.logon_failures >= self.settings.max_logon_failures:
            self.loop.call_soon(self._close)
            return str(Replies.TOO_MANY_ERRORS)
        return reply

    def _check_password(self, server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode("utf-8", "replace").strip().lower()
            password = auth_data.password.decode("utf-8", "replace")
            mb = self.connector.config.mailbox(user)
            if mb is not None and mb.password is not None and mb.password == password:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False, message=str(Replies.AUTH_FAILED))

    # -- MAIL / RCPT --------------------------------------------------------------------------------
    async def _parse_path(self, arg: str | None, keyword: str) -> tuple[str, list[str]] | None:
        """`FROM:<addr> params` → (addr, params); None after replying with the error."""
        if arg is None or not arg[: len(keyword)].upper() == keyword:
            await self._protocol_error(Replies.SYNTAX_MAIL)
            return None
        parsed = split_path(arg[len(keyword):])
        if parsed is None:
            await self._protocol_error(Replies.BAD_ADDRESS)
            return None
        return parsed[0], parsed[1].split()

    async def smtp_MAIL(self, arg: str | None) -> None:
        if not self.info.helo:
            await self._protocol_error(Replies.SEND_HELLO_FIRST)
            return
        if self.mail_from is not None:
            await self._protocol_error(Replies.SENDER_ALREADY)
            return
        parsed = await self._parse_path(arg, "FROM:")
        if parsed is None:
            return
        address, words = parsed
        params = esmtp_params(words, MAIL_PARAMS) if self.info.esmtp or not words else UNRECOGNIZED_PARAMETER
        if isinstance(params, SmtpResponse):
            await self._protocol_error(params)
            return
        if "SIZE" in params:
            if not params["SIZE"].isdigit():
                await self._protocol_error(SmtpResponse(501, "5.5.4", "Invalid SIZE parameter"))
                return
            if int(params["SIZE"]) > self.data_size_limit:
                await self.reply(Replies.SIZE_EXCEEDED)
                return
        if address and "@" not in address:
            await self._protocol_error(Replies.BAD_ADDRESS)
            return
        if self.submission.back_pressure:
            await self.reply(Replies.RESOURCES)
            return
        if not self.connector.limits.may_submit(self.info.client_ip):
            await self.reply(RATE_EXCEEDED)
            self._close()
            return
        refused = submit_refusal(self.settings, self.info)
        if refused is not None:
            await self.reply(refused)
            return
        if await self._command_event(ev.MailFromEvent(self.info, address, params)):
            return
        self.mail_from, self.mail_params = address, params
        await self.reply(Replies.OK_SENDER)

    async def smtp_RCPT(self, arg: str | None) -> None:
        if self.mail_from is None:
            await self._protocol_error(Replies.NEED_MAIL)
            return
        parsed = await self._parse_path(arg, "TO:")
        if parsed is None:
            return
        address, words = parsed
        params = esmtp_params(words, RCPT_PARAMS) if self.info.esmtp or not words else UNRECOGNIZED_PARAMETER
        if isinstance(params, SmtpResponse):
            await self._protocol_error(params)
            return
        if "@" not in address or address.startswith("@"):
            await self._protocol_error(Replies.BAD_ADDRESS)
            return
        if len(self.rcpts) >= self.settings.max_recipients_per_message:
            await self.reply(Replies.TOO_MANY_RECIPIENTS)
            return
        recipient = Recipient(address, params)
        if (denied := relay_refusal(self.connector.config, self.info, recipient)) is not None:
            await self.reply(denied)
            return
        if await self._command_event(ev.RcptToEvent(self.info, self.mail_from, recipient, self.rcpts)):
            return
        self.rcpts.append(recipient)
        await self.reply(Replies.OK_RECIPIENT)

    # -- XCLIENT (Postfix's extension) ---------------------------------------------------------------
    @property
    def _xclient_allowed(self) -> bool:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return bool(peer) and self.connector.xclient_allowed(str(peer[0]))

    async def smtp_XCLIENT(self, arg: str | None) -> None:
        """`XCLIENT ADDR=192.0.2.66 HELO=mail.example NAME=… PROTO=ESMTP`: from a trusted client only, the session
        goes on as if that client had connected (OnConnect runs again) and, with HELO, greeted with that name
        (which later EHLOs do not replace); the reply is a new 220 greeting."""
        if not self._xclient_allowed:
            await self.reply(Replies.XCLIENT_DENIED)
            return
        if self.mail_from is not None:
            await self.reply(SmtpResponse(503, "5.5.1", "Error: MAIL transaction in progress"))
            return
        attrs = parse_xclient(arg or "")
        if isinstance(attrs, SmtpResponse):
            await self._protocol_error(attrs)
            return
        info = self.info
        if "ADDR" in attrs:
            info.client_ip = attrs["ADDR"]
            info.internal = self.submission.is_internal(info.client_ip)
        if "NAME" in attrs:
            info.client_hostname = attrs["NAME"]
        if "HELO" in attrs:
            self.xclient_helo = attrs["HELO"]
        info.on_allow_list = info.on_block_list = False
        info.reverse_dns, info.helo = "", self.xclient_helo
        info.esmtp = attrs.get("PROTO", "ESMTP" if info.esmtp else "SMTP") == "ESMTP"
        self._reset()
        if self.pipeline.has("on_connect"):
            event = await self.pipeline.run(ev.ConnectEvent(info))
            if event.action in (Action.REJECT, Action.DISCONNECT):
                if event.response is not None:
                    await self.push(str(event.response))
                self._close()
                return
        if self.xclient_helo:  # as if the client had said HELO/EHLO with that name (reverse DNS, HELO checks)
            event_cls = ev.EhloEvent if info.esmtp else ev.HeloEvent
            if await self._command_event(event_cls(info, self.xclient_helo)):
                return
        await self.push(f"220 {self.hostname} {self.__ident__}")

    async def smtp_RSET(self, arg: str) -> None:
        self._reset()
        if self.pipeline.has("on_rset"):
            await self.pipeline.run(ev.RsetEvent(self.info))
        await self.push("250 2.0.0 Resetting")

    async def smtp_NOOP(self, arg: str) -> None:
        await self.push("250 2.0.0 OK")

    async def smtp_QUIT(self, arg: str) -> None:
        await self.reply(Replies.CLOSING)
        self._close()

    async def smtp_VRFY(self, arg: str) -> None:
        await self.push("252 2.1.5 Cannot VRFY user")

    async def smtp_EXPN(self, arg: str) -> None:
        await self.push("502 5.3.3 Command not implemented")

    # -- DATA ---------------------------------------------------------------------------------------
    async def smtp_DATA(self, arg: str) -> None:
        if self.mail_from is None:
            await self._protocol_error(Replies.NEED_MAIL)
            return
        if not self.rcpts:
            await self._protocol_error(Replies.NEED_RCPT)
            return
        if await self._command_event(ev.DataEvent(self.info, self.mail_from, self.rcpts)):
            return
        await self.reply(Replies.START_DATA)
        data = await self._read_data()
        if data is None:
            return
        head, spool = data
        response = await self._end_of_data(head, spool)
        self._reset()
        if response is not None:
            await self.reply(response)
        if spool is not None:
            await asyncio.to_thread(give_back_memory)

    async def _read_data(self) -> tuple[bytes, Spool | None] | None:
        """Read up to CRLF.CRLF (see `transport.spool.read_data`); None when the reply was sent."""
        reader = self._reader
        saved_limit = reader._limit  # aiosmtpd sizes the reader for command lines; DATA wants whole chunks
        reader._limit = 1 << 20
        try:
            data = await read_data(reader, self.data_size_limit, max(SPOOL_THRESHOLD, self.settings.max_header_size + 4),
                                   self.submission.spool_folder, self.connector.config.queue.durable)
        except asyncio.IncompleteReadError:
            self._close()
            return None
        finally:
            reader._limit = saved_limit
        if data is None:
            await self.reply(Replies.SIZE_EXCEEDED)
            self._reset()
        return data

    async def _end_of_data(self, data: bytes, spool: Spool | None) -> SmtpResponse | None:
        """Build the mail item and hand it to the submission path. Returns the reply (None: session dropped).

        A spooled body is deleted when the message is not queued; once the submission path has it, the queue
        store owns it (a session cancelled while the commit is in flight leaves it to the store's sweep at start).
        """
        rc = self.settings
        response: SmtpResponse | None
        if len(data) + (spool.size if spool else 0) > rc.max_message_size:
            response = Replies.SIZE_EXCEEDED
        elif header_end(data) > rc.max_header_size:
            response = Replies.HEADER_SIZE_EXCEEDED
        else:
            item = MailItem(sender=self.mail_from or "", recipients=self.rcpts, raw=data, source=Source.SMTP,
                            mail_params=self.mail_params, session=replace(self.info), spool=spool)
            self.rcpts = []
            if sum(1 for h in item.headers if h.key == "received") >= MAX_HOP_COUNT:
                response = Replies.HOP_COUNT
            else:
                return await self._submit(item)
        if spool is not None:
            spool.path.unlink(missing_ok=True)
        return response

    async def _submit(self, item: MailItem) -> SmtpResponse | None:
        try:
            receipt = await self.submission.receive(item)
        except StoreError as e:
            log.error("could not queue a message from %s: %s", self.info.client_ip, e)
            receipt = None
            unqueued = Replies.NOT_HANDED_OVER if isinstance(e, HandOverError) else Replies.QUEUE_UNAVAILABLE
        if receipt is not None and receipt.ended is None:
            return Replies.queued(item.message_id, receipt.internal_id, self.settings.fqdn)
        if item.spool is not None:
            item.spool.path.unlink(missing_ok=True)
        if receipt is None:
            return unqueued
        ended = receipt.ended
        if ended.action is Action.DISCONNECT:
            self._close()
            return None
        return ended.response if ended.action is Action.REJECT else Replies.queued(item.message_id)
