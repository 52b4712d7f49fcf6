"""The message events every receiving source fires before submission: OnEndOfHeaders, then OnEndOfData.

SMTP receive and the Pickup and Replay directories hand the same mail item to the same agents and read their
verdicts the same way: a reject, a silent delete or a disconnect ends the message (each one recorded in the
tracking log as AGENTINFO), a quarantine stamps it and lets it go on to the Submission queue. Only the answer
differs: an SMTP client gets a reply, a dropped file goes to badmail or away.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .events import Action, EndOfDataEvent, EndOfHeadersEvent, MessageEvent
from .mailitem import MailItem

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["run_message_events"]


async def run_message_events(hub: "Hub", item: MailItem) -> MessageEvent | None:
    """Fire the message events on a stamped mail item; the event whose agent ended the message, or None.

    The returned event's action is REJECT (with its response), DELETE or DISCONNECT; None means submit.
    """
    for event_cls in (EndOfHeadersEvent, EndOfDataEvent):
        if not hub.pipeline.has(event_cls.name):
            continue
        event = await hub.pipeline.run(event_cls(item.session, item))
        if event.action is Action.QUARANTINE:
            hub.quarantine(item, event.reason)
            return None
        if event.action in (Action.REJECT, Action.DELETE, Action.DISCONNECT):
            what = {Action.REJECT: event.reason, Action.DELETE: f"deleted {event.reason}",
                    Action.DISCONNECT: "disconnect"}[event.action]
            hub.tracking.log("AGENTINFO", item, "AGENT", recipient_status=str(event.response or ""),
                             source_context=item.session.session_id,
                             custom_data=f"{event.decided_by}: {what}".rstrip())
            return event
    return None
