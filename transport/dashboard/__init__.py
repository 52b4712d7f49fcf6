"""The web dashboard: queues, message tracking, trace, mailboxes and the hub's overview in a browser, with every
page's data as JSON under `/api/…`. `transport run` starts it, in a process of its own, when `dashboard.enabled`."""

from .process import DashboardProcess
from .server import build_app, listen

__all__ = ["DashboardProcess", "build_app", "listen"]
