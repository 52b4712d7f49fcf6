"""The web dashboard: queues, message tracking, trace, mailboxes and the hub's overview in a browser, with every
page's data as JSON under `/api/…`. `transport run` starts it (in a thread of its own) when `dashboard.enabled`."""

from .server import Dashboard, build_app

__all__ = ["Dashboard", "build_app"]
