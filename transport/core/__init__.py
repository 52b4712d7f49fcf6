"""The core of the transport: the model every part shares, importing nothing else of the project.

The mail item and its stamps, events and SMTP replies, headers, configuration models, the agent base classes
and pipeline, the DNS layer, the tracking log, counters, the command registry and the exception root. The hub
(`transport/`), `queues/`, `pickup/`, `replay/` and `agents/` build on it; it builds on none of them.
"""
