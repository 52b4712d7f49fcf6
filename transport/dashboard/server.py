"""The dashboard's web server: aiohttp, in a process of its own (`transport.dashboard.process` starts it), so no
page is ever built on the hub's event loop, nor holds the hub's interpreter lock, while a session waits.

Pages are Jinja2 templates; every page's data is also JSON under `/api/…`. Requests that change state (queue and
message actions) need `dashboard.token`, as a `token` form field or an `X-Transport-Token` header; without it they
get 403 and nothing changes. The actions are those of `transport queue …` and `transport message …`
(`queues.cli`): they write to the queue database, and the running hub picks the change up within
`queue.admin_poll_interval`, as it does for the command line.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web

from queues import cli as queue_commands
from transport.core.config import TransportConfig
from transport.core.errors import TransportError
from transport.mailbox_listing import MailboxFolder

from . import charts
from .views import TRACK_FILTERS, Views

__all__ = ["build_app", "listen", "serve"]

log = logging.getLogger("transport.dashboard")

HERE = Path(__file__).resolve().parent
TOKEN_HEADER = "X-Transport-Token"
QUEUE_ACTIONS = {"suspend": ("suspend", False), "resume": ("resume", False), "retry": ("retry", False),
                 "resubmit": ("retry", True)}
MESSAGE_ACTIONS = ("suspend", "resume", "remove", "remove-with-ndr", "export")
NAV = [("/", "Overview"), ("/queues", "Queues"), ("/track", "Message tracking"), ("/trace", "Trace"),
       ("/mailboxes", "Mailboxes")]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Forbidden(web.HTTPForbidden):
    def __init__(self, why: str, as_json: bool) -> None:
        if as_json:
            super().__init__(text=json.dumps({"error": why}), content_type="application/json")
        else:
            super().__init__(text=f"403 Forbidden: {why}\n")


def build_app(config: TransportConfig, pipeline: Callable[[], list[dict[str, Any]]]) -> web.Application:
    """The dashboard as an aiohttp application (the dashboard process runs it; tests may too)."""
    views = Views(config, pipeline)
    settings = config.dashboard
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, extensions=["jinja2.ext.do"],
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(nav=NAV, server=config.receive.fqdn, organization=config.organization.name,
                       refresh=settings.refresh_interval, charts=charts, folders=[f.value for f in MailboxFolder],
                       actions_enabled=bool(settings.token), quote=lambda s: quote(str(s), safe=""))

    def page(template: str, request: web.Request, **data: Any) -> web.Response:
        context = {"path": request.path, "done": request.query.get("done", ""),
                   "error": request.query.get("error", "")} | data
        html = env.get_template(template).render(**context)
        return web.Response(text=html, content_type="text/html")

    def as_json(data: Any, status: int = 200) -> web.Response:
        return web.Response(text=json.dumps(data, indent=2), status=status, content_type="application/json")

    async def authorise(request: web.Request, api: bool) -> dict[str, str]:
        """The form fields of a state-changing request whose token is right; 403 otherwise."""
        form = {k: str(v) for k, v in (await request.post()).items()}
        given = request.headers.get(TOKEN_HEADER) or form.get("token", "")
        if not settings.token:
            raise Forbidden("the dashboard only reads: set dashboard.token in the configuration to allow actions", api)
        if not given or not hmac.compare_digest(given.encode(), settings.token.encode()):
            raise Forbidden(f"this request changes the hub's state and needs the dashboard token "
                            f"(dashboard.token) as the `token` form field or the {TOKEN_HEADER} header", api)
        return form

    def back(request: web.Request, to: str, **message: str) -> web.HTTPSeeOther:
        return web.HTTPSeeOther(f"{to}?{urlencode(message)}")

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        """A bad request is a sentence (a 400, or back to the page saying why), never a traceback."""
        try:
            return await handler(request)
        except TransportError as e:
            if request.path.startswith("/api/"):
                return as_json({"error": str(e)}, 400)
            if request.method == "POST" and request.path.startswith("/queues/"):
                raise back(request, "/queues/" + quote(request.match_info["queue"], safe="") if "messages" in request.path
                           else "/queues", error=str(e)) from None
            if request.method == "POST" and request.path == "/trace":
                return page("trace.html", request, title="Trace", form=_trace_defaults(config) | {
                    k: str(v) for k, v in (await request.post()).items() if isinstance(v, str)}, result=None, error=str(e))
            return page("error.html", request, title="Cannot show this page", error=str(e))
        except web.HTTPException:
            raise
        except Exception as e:  # a bug of ours: say so, keep serving
            log.exception("dashboard request %s %s failed", request.method, request.path)
            return web.Response(status=500, text=f"500 Internal Server Error: {type(e).__name__}: {e}\n")

    # -- overview ----------------------------------------------------------------------------------
    async def overview(request: web.Request) -> web.Response:
        return page("overview.html", request, title="Overview", data=views.overview())

    async def api_overview(request: web.Request) -> web.Response:
        return as_json(views.overview())

    async def api_counters(request: web.Request) -> web.Response:
        return as_json(views.counters())

    # -- queues ------------------------------------------------------------------------------------
    async def queues(request: web.Request) -> web.Response:
        return page("queues.html", request, title="Queues", queues=views.queues())

    async def queue(request: web.Request) -> web.Response:
        name = request.match_info["queue"]
        return page("queue.html", request, title=f"Queue {name}", queue=name, messages=views.queue_messages(name))

    async def queue_action(request: web.Request) -> web.Response:
        api = request.path.startswith("/api/")
        form = await authorise(request, api)
        action, resubmit = QUEUE_ACTIONS[request.match_info["action"]]
        resubmit = resubmit or form.get("resubmit", "").lower() in ("1", "true", "on")
        data, text = queue_commands.queue_action(config, action, request.match_info["queue"], resubmit)
        if api:
            return as_json(data)
        raise back(request, "/queues", done=text)

    async def message_action(request: web.Request) -> web.StreamResponse:
        api = request.path.startswith("/api/")
        form = await authorise(request, api)
        queue, number, action = (request.match_info.get("queue"), request.match_info["message"],
                                 request.match_info["action"])
        identity = f"{queue}\\{number}" if queue else number
        if action == "export":
            body = queue_commands.export_message(config, identity)
            return web.Response(body=body, content_type="message/rfc822", headers={
                "Content-Disposition": f'attachment; filename="message-{int(number)}.eml"'})
        if action.startswith("remove"):
            with_ndr = action == "remove-with-ndr" or form.get("with_ndr", "").lower() in ("1", "true", "on")
            data = queue_commands.remove_message(config, identity, with_ndr)
            text = f"message {number} removed from {data['queue']}" + (" (NDR)" if with_ndr else "")
        else:
            data, text = queue_commands.set_message_status(config, identity, suspended=action == "suspend")
        if api:
            return as_json(data)
        raise back(request, f"/queues/{quote(queue or data.get('queue', ''), safe='')}", done=text)

    async def api_queues(request: web.Request) -> web.Response:
        return as_json(views.queues())

    async def api_queue(request: web.Request) -> web.Response:
        return as_json(views.queue_messages(request.match_info["queue"]))

    # -- message tracking --------------------------------------------------------------------------
    async def track(request: web.Request) -> web.Response:
        query = {k: request.query.get(k, "") for k in TRACK_FILTERS}
        rows = views.track(query)
        timeline = bool(query["message_id"]) and not any(v for k, v in query.items() if k != "message_id")
        return page("track.html", request, title="Message tracking", query=query, rows=rows, timeline=timeline,
                    request_query=request.query_string,
                    searched=any(query.values()) or "all" in request.query)

    async def api_track(request: web.Request) -> web.Response:
        return as_json(views.track(dict(request.query)))

    # -- mailboxes ---------------------------------------------------------------------------------
    async def mailboxes(request: web.Request) -> web.Response:
        return page("mailboxes.html", request, title="Mailboxes", mailboxes=views.mailboxes())

    async def mailbox(request: web.Request) -> web.Response:
        address, folder = request.match_info["address"], request.query.get("folder", "Inbox")
        return page("mailbox.html", request, title=address, address=address, folder=folder,
                    messages=views.mailbox(address, folder))

    async def mailbox_message(request: web.Request) -> web.Response:
        m = request.match_info
        return page("message.html", request, title=m["address"], message=views.message(m["address"], m["folder"], m["key"]))

    async def api_mailboxes(request: web.Request) -> web.Response:
        return as_json(views.mailboxes())

    async def api_mailbox(request: web.Request) -> web.Response:
        return as_json(views.mailbox(request.match_info["address"], request.query.get("folder", "Inbox")))

    async def api_mailbox_message(request: web.Request) -> web.Response:
        m = request.match_info
        return as_json(views.message(m["address"], m["folder"], m["key"]))

    # -- trace -------------------------------------------------------------------------------------
    async def trace_form(request: web.Request) -> web.Response:
        return page("trace.html", request, title="Trace", form=_trace_defaults(config), result=None)

    async def run_trace(request: web.Request) -> dict[str, Any]:
        form = await request.post()
        fields = _trace_defaults(config) | {k: str(v) for k, v in form.items() if isinstance(v, str)}
        upload = form.get("file")
        raw = upload.file.read() if isinstance(upload, web.FileField) and upload.filename else fields.get("message", "").encode()
        if not raw.strip():
            raise TransportError("give the message: paste it or upload an .eml file")
        return fields | {"result": await views.trace(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), fields)}

    async def trace_page(request: web.Request) -> web.Response:
        done = await run_trace(request)
        result = done.pop("result")
        return page("trace.html", request, title="Trace", form=done, result=result)

    async def api_trace(request: web.Request) -> web.Response:
        return as_json((await run_trace(request))["result"])

    app = web.Application(middlewares=[errors], client_max_size=config.receive.max_message_size + 1024 * 1024)
    app.add_routes([
        web.get("/", overview), web.get("/api/overview", api_overview), web.get("/api/counters", api_counters),
        web.get("/queues", queues), web.get("/api/queues", api_queues),
        web.get("/queues/{queue}", queue), web.get("/api/queues/{queue}", api_queue),
        web.post("/queues/{queue}/{action:suspend|resume|retry|resubmit}", queue_action),
        web.post("/api/queues/{queue}/{action:suspend|resume|retry|resubmit}", queue_action),
        web.post("/queues/{queue}/messages/{message:\\d+}/{action:" + "|".join(MESSAGE_ACTIONS) + "}", message_action),
        web.post("/api/messages/{message:\\d+}/{action:" + "|".join(MESSAGE_ACTIONS) + "}", message_action),
        web.get("/track", track), web.get("/api/track", api_track),
        web.get("/trace", trace_form), web.post("/trace", trace_page), web.post("/api/trace", api_trace),
        web.get("/mailboxes", mailboxes), web.get("/api/mailboxes", api_mailboxes),
        web.get("/mailboxes/{address}", mailbox), web.get("/api/mailboxes/{address}", api_mailbox),
        web.get("/mailboxes/{address}/{folder}/{key}", mailbox_message),
        web.get("/api/mailboxes/{address}/{folder}/{key}", api_mailbox_message),
        web.static("/static", HERE / "static"),
    ])
    return app


def _trace_defaults(config: TransportConfig) -> dict[str, str]:
    return {"client_ip": "127.0.0.1", "helo": "", "mail_from": "", "recipients": "",
            "connector": config.receive.name, "message": ""}


async def listen(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, tuple[str, int]]:
    """Serve the application on host:port (0 = any free port); returns the runner and the address it got.
    Raises the OSError of a binding it cannot take."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    sockets = getattr(site._server, "sockets", None) or []
    return runner, (sockets[0].getsockname()[:2] if sockets else (host, port))


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def serve(config: TransportConfig, pipeline: list[dict[str, Any]], parent: int) -> int:
    """The dashboard process: listen, say `listening on HOST:PORT` (or `cannot listen: …`) on stdout, then serve
    until SIGTERM or until the hub that started it (`parent`) is gone, however it ended."""
    host, port = config.dashboard.host_port
    try:
        runner, (host, port) = await listen(build_app(config, lambda: pipeline), host, port)
    except OSError as e:
        print(f"cannot listen: {e.strerror or e}", flush=True)
        return 1
    print(f"listening on {host}:{port}", flush=True)
    if not _loopback(host):
        log.warning("the dashboard on %s:%s is reachable from other machines: whoever reaches it reads the queues, the "
                    "tracking log and the mailboxes' headers (only its actions need dashboard.token)", host, port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set() and os.getppid() == parent:
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass
    await runner.cleanup()
    return 0
