"""The web dashboard: queues, message tracking, trace, mailboxes and the hub's overview in a browser, with every
page's data as JSON under `/api/…`. `transport run` starts it, in a process of its own, when `dashboard.enabled`
(`process.DashboardProcess`); the server is `server.build_app`. Nothing is imported here, so the hub's process
never loads the web server."""
