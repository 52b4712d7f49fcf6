"""SMTP send: the delivery queue of one next hop behind a send connector (a smart host, or a domain's MX).

The client is aiosmtplib; this module decides what to send and what the replies mean:

- **Where**: a smart host connector tries its hosts in order; DNS routing looks up the domain's MX records
  through the hub's shared resolver (zone files answer in tests and the demo) and tries each host by preference,
  each of its A/AAAA addresses; a domain without MX records is its own host (RFC 5321 §5.1). A domain that does
  not exist fails at once (`550 5.4.4 SMTPSEND.DNS.NonExistentDomain`); a null MX (RFC 7505) too.
- **How**: EHLO, STARTTLS whenever offered (required with `require_tls`), AUTH to a smart host that needs it,
  then MAIL, one RCPT per recipient, DATA. The DSN parameters (RET, ENVID, NOTIFY, ORCPT) are passed on to a
  next hop that advertises DSN; a recipient that asked NOTIFY=SUCCESS of one that does not gets a "relayed" notice.
- **What the replies mean**: per recipient. 2xx: delivered here (tracking SEND with the remote reply); 5xx:
  failed, an NDR for it; 4xx, a connection that fails or drops: the recipient waits in Retry on the queue's
  schedule, until it expires. A reply that is not one (a malformed line, or a 2xx or 3xx where the command
  needed another) counts as a 4xx: better a message sent twice than one counted as sent that was not.
- **Connections**: at most `max_connections_per_domain` at once to the next hop, each reused for up to
  `max_messages_per_connection` messages while more wait; a new connection opens only when the waiting
  messages outnumber what the open ones will carry.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiosmtplib

from ..core.dns import DnsTempError, Resolver
from ..core.dsn_params import Notifier
from ..core.events import SmtpResponse
from ..core.mailitem import MailItem, Recipient, RecipientStatus
from ..core.outbound_config import SendConnector
from ..core.protocol_log import ProtocolLog, ProtocolLoggingLevel
from ..core.tracking import TrackingEvent
from .feed import Entry, QueueFeed
from .send_protocol_log import LoggedSMTP

if TYPE_CHECKING:
    from queues.scheduler import QueueScheduler

    from ..core.tracking import TrackingLog

__all__ = ["SmtpDeliveryQueue", "Outbound", "HopFailure", "NON_EXISTENT_DOMAIN"]

log = logging.getLogger("transport.delivery.smtp")

NON_EXISTENT_DOMAIN = SmtpResponse(550, "5.4.4", "SMTPSEND.DNS.NonExistentDomain; nonexistent domain")
NULL_MX = SmtpResponse(556, "5.1.10", "SMTPSEND.DNS.NullMx; the domain accepts no mail")
DNS_FAILED = SmtpResponse(451, "4.4.0", "DNS query failed")
TLS_REQUIRED = SmtpResponse(451, "4.7.3", "STARTTLS is required to send mail")
TOO_LARGE = SmtpResponse(550, "5.3.4", "ROUTING.SizeLimit; message size exceeds fixed maximum size for route")


class HopFailure(Exception):
    """The next hop could not be reached (or refused the session): every recipient of the message gets `reply`."""

    def __init__(self, reply: SmtpResponse) -> None:
        super().__init__(str(reply))
        self.reply = reply


@dataclass(slots=True)
class Outbound:
    """What every SMTP delivery queue shares: the hub's name, resolver, tracking log, scheduler, notifier."""

    fqdn: str
    dns: Resolver
    tracking: "TrackingLog"
    scheduler: "QueueScheduler"
    notifier: Notifier
    protocol_log: ProtocolLog | None = None  # SmtpSend, for the connectors whose ProtocolLoggingLevel is Verbose


def _tls_context() -> ssl.SSLContext:
    """Opportunistic TLS, as Exchange sends by default: encrypt, without requiring a certificate it can verify."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _Session:
    """One open SMTP connection to the next hop, and what it offers."""

    def __init__(self, client: aiosmtplib.SMTP, name: str, host: str) -> None:
        self.client = client
        self.name = name  # the host name (or address) as routing found it: the reports' Remote-MTA
        self.host = host  # "name [ip]:port", for tracking
        self.sent = 0

    @property
    def dsn(self) -> bool:
        return self.client.supports_extension("dsn")

    async def close(self) -> None:
        try:
            await self.client.quit()
        except (aiosmtplib.SMTPException, OSError):
            self.client.close()


class SmtpDeliveryQueue(QueueFeed):
    """The delivery queue of one next hop: a smart host connector's (named for the connector) or a domain's."""

    def __init__(self, next_hop: str, connector: SendConnector, outbound: Outbound) -> None:
        super().__init__()
        self.next_hop = next_hop
        self.connector = connector
        self.delivery_type = connector.delivery_type
        self.out = outbound
        self._wake = asyncio.Event()
        self._tls = _tls_context()
        self.connections = 0  # connections opened so far (tests and the bench read it)

    def push(self, item_id: int, item: MailItem, recipients: list[str], recovered: bool = False) -> None:
        super().push(item_id, item, recipients, recovered)
        self._wake.set()

    async def run(self) -> None:
        """Open connections as the backlog needs them (see the module docstring); each drains the feed."""
        workers: set[asyncio.Task] = set()
        per_connection = self.connector.max_messages_per_connection
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                workers = {w for w in workers if not w.done()}
                wanted = min(self.connector.max_connections_per_domain, -(-self.feed.qsize() // per_connection))
                while len(workers) < wanted:
                    workers.add(asyncio.create_task(self._worker(), name=f"send-{self.next_hop}"))
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self) -> None:
        session: _Session | None = None
        try:
            while not self.feed.empty():
                entry = self.feed.get_nowait()
                self._busy += 1
                try:
                    session = await self._deliver(entry, session)
                except Exception:
                    log.exception("sending message %s to %s failed; it stays queued", entry[1].internal_id,
                                  self.next_hop)
                finally:
                    self._busy -= 1
                if session is not None and session.sent >= self.connector.max_messages_per_connection:
                    await session.close()
                    session = None
        finally:
            if session is not None:
                await session.close()
            self._wake.set()  # the backlog may want another connection now

    # -- one message ----------------------------------------------------------------------------------
    async def _deliver(self, entry: Entry, session: _Session | None) -> _Session | None:
        item_id, item, addresses, _ = entry
        recipients = [r for r in item.recipients if r.address in addresses]
        if item.size > self.connector.max_message_size:
            await self._settle(item_id, item, {r.address: TOO_LARGE for r in recipients}, None)
            return session
        try:
            if session is None:
                session = await self._connect()
            replies = await self._transaction(session, item, recipients)
        except HopFailure as failure:
            await self._settle(item_id, item, {r.address: failure.reply for r in recipients}, session)
            return None if session is None or not session.client.is_connected else session
        session.sent += 1
        await self._settle(item_id, item, replies, session)
        return session if session.client.is_connected else None

    async def _transaction(self, session: _Session, item: MailItem, recipients: list[Recipient]) -> dict[str, SmtpResponse]:
        """MAIL, RCPT each, DATA: the reply that settles each recipient. HopFailure when the session fails."""
        client = session.client
        mail_options = []
        if client.supports_extension("size"):
            mail_options.append(f"SIZE={item.size}")
        if "BODY" in item.mail_params and client.supports_extension("8bitmime"):
            mail_options.append(f"BODY={item.mail_params['BODY']}")
        if session.dsn:
            mail_options += [f"{k}={item.mail_params[k]}" for k in ("RET", "ENVID") if item.mail_params.get(k)]
        replies: dict[str, SmtpResponse] = {}
        try:
            try:
                await client.mail(item.sender, options=mail_options, encoding="utf-8")
            except aiosmtplib.SMTPResponseException as e:
                await self._reset(client)
                return {r.address: _refusal(e) for r in recipients}
            accepted = []
            for r in recipients:
                options = [f"{k}={r.params[k]}" for k in ("NOTIFY", "ORCPT") if r.params.get(k)] if session.dsn else []
                try:
                    await client.rcpt(r.address, options=options, encoding="utf-8")
                    accepted.append(r)
                except aiosmtplib.SMTPResponseException as e:
                    replies[r.address] = _refusal(e)
            if not accepted:
                await self._reset(client)
                return replies
            try:
                content = await asyncio.to_thread(item.content) if item.spool is not None else item.raw  # off the loop
                done = await client.data(content)
                reply = _reply(done.code, done.message)
            except aiosmtplib.SMTPResponseException as e:
                reply = _refusal(e)
            replies.update({r.address: reply for r in accepted})
            return replies
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as e:
            client.close()
            raise HopFailure(SmtpResponse(451, "4.4.2", f"Connection to {session.host} dropped: {e}")) from None

    @staticmethod
    async def _reset(client: aiosmtplib.SMTP) -> None:
        try:
            await client.rset()
        except aiosmtplib.SMTPException:
            client.close()

    async def _settle(self, item_id: int, item: MailItem, replies: dict[str, SmtpResponse],
                      session: _Session | None) -> None:
        """Track each recipient's outcome; NDR the failed, retry the deferred, complete the rest."""
        tracking, connector = self.out.tracking, self.connector.name
        host = session.host if session is not None else self.next_hop
        sent, failed, deferred = [], [], []
        for r in item.recipients:
            reply = replies.get(r.address)
            if reply is None:
                continue
            r.response = str(reply)
            (sent if reply.code < 400 else deferred if reply.transient else failed).append(r)
        for event, group in ((TrackingEvent.SEND, sent), (TrackingEvent.FAIL, failed), (TrackingEvent.DEFER, deferred)):
            for reply_text, rcpts in _by_reply(group).items():
                tracking.log(event, item, "SMTP", rcpts, reply_text, connector_id=connector,
                             source_context=self.next_hop, custom_data=host)
        for r in failed:
            r.status = RecipientStatus.FAILED
        remote = session.name if session is not None else ""
        if failed:
            await self.out.notifier.ndr(item, failed, remote_mta=remote)
        if sent and (session is None or not session.dsn):
            await self.out.notifier.success(item, sent, relayed=True, remote_mta=remote)
        if deferred:
            await self.out.scheduler.defer(item_id, [r.address for r in deferred], deferred[0].response)
        else:
            await self.out.scheduler.complete([item_id])

    # -- the connection ---------------------------------------------------------------------------------
    async def _connect(self) -> _Session:
        """The first target that takes a session; HopFailure with the reason when none does."""
        errors = []
        for name, address, port in await self._targets():
            where = f"[{address}]:{port}" if name == address else f"{name} [{address}]:{port}"
            options: dict = dict(hostname=address, port=port, local_hostname=self.out.fqdn,
                                 timeout=self.connector.connection_timeout, start_tls=False)
            log = self.out.protocol_log if self.connector.protocol_logging_level is ProtocolLoggingLevel.VERBOSE else None
            client = LoggedSMTP(log, self.connector.name, **options) if log is not None else aiosmtplib.SMTP(**options)
            try:
                await client.connect()
                self.connections += 1
                await client.ehlo()
                if client.supports_extension("starttls"):
                    await client.starttls(tls_context=self._tls, server_hostname=name)
                    await client.ehlo()
                elif self.connector.require_tls:
                    client.close()
                    errors.append(f"{where}: {TLS_REQUIRED}")
                    continue
                if self.connector.auth is not None:
                    await client.login(self.connector.auth.username, self.connector.auth.password)
                return _Session(client, name, where)
            except aiosmtplib.SMTPResponseException as e:
                client.close()
                errors.append(f"{where}: {e.code} {e.message}")
            except (aiosmtplib.SMTPException, OSError) as e:
                client.close()
                errors.append(f"{where}: {_reason(e)}")
        detail = "; ".join(errors) or "no target address"
        raise HopFailure(SmtpResponse(451, "4.4.1", f"Error encountered while communicating with the target: {detail}"))

    async def _targets(self) -> list[tuple[str, str, int]]:
        """(host name, address, port) to try, in order."""
        if self.connector.smart_hosts:
            out = []
            for host, port in self.connector.smart_host_addresses():
                out += [(host, a, port) for a in await self._addresses(host, must_exist=False)]
            return out
        domain = self.next_hop
        try:
            mx = await self.out.dns.lookup(domain, "MX")
        except DnsTempError:
            raise HopFailure(DNS_FAILED) from None
        if mx.rcode == "NXDOMAIN":
            raise HopFailure(NON_EXISTENT_DOMAIN)
        hosts = sorted(mx.records) if mx.rcode == "NOERROR" and mx.records else [(0, domain)]  # RFC 5321 §5.1
        if len(hosts) == 1 and hosts[0][1] in ("", "."):
            raise HopFailure(NULL_MX)
        out = []
        for _, host in hosts:
            out += [(host, a, self.connector.port) for a in await self._addresses(host, must_exist=True)]
        if not out:
            raise HopFailure(NON_EXISTENT_DOMAIN if mx.rcode != "NOERROR" else DNS_FAILED)
        return out

    async def _addresses(self, host: str, must_exist: bool) -> list[str]:
        """A host's A then AAAA addresses (an IP literal is its own); for a smart host not found in DNS, the
        name itself, for the system's resolver."""
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self.out.dns.lookup(host, rdtype)
            except DnsTempError:
                continue
            found += [str(a) for a in answer.records]
        return found or ([] if must_exist else [host])


def _reply(code: int, message: str) -> SmtpResponse:
    """A remote reply as an SmtpResponse (its enhanced status code split off when it has one)."""
    text = " ".join(message.split())
    try:
        return SmtpResponse.parse(f"{code} {text}")
    except ValueError:
        return SmtpResponse(code, "", text)


def _refusal(error: aiosmtplib.SMTPResponseException) -> SmtpResponse:
    """The reply that refused a command. One that is neither a 4xx nor a 5xx (aiosmtplib's -1 for a malformed
    line, or a 2xx or 3xx where the command needed another) refuses nothing the hub can act on and accepts
    nothing either: a transient failure, so the message is tried again, never counted as sent."""
    reply = _reply(error.code, error.message)
    if 400 <= reply.code < 600:
        return reply
    return SmtpResponse(451, "4.4.0", f"the next hop's reply was not what SMTP allows here: {reply}")


def _reason(error: Exception) -> str:
    """Why a connection failed, in a few words ("Connection refused", "timed out")."""
    if isinstance(error, aiosmtplib.SMTPTimeoutError):
        return "timed out"
    for cause in (error.__cause__, error):
        if isinstance(cause, OSError) and cause.errno:
            return os.strerror(cause.errno)
    return str(error)


def _by_reply(recipients: list[Recipient]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in recipients:
        out.setdefault(r.response, []).append(r.address)
    return out
