"""The threads that work for an event loop (the queue store's writer, the pool behind `asyncio.to_thread`) run
under Linux's SCHED_BATCH policy, so that waking one does not preempt the event loop's thread.

The loop's thread holds the GIL while it runs. When a hand-over to a thread (a batch of store operations, a
Maildir write) woke that thread with the ordinary policy, a busy machine often took the CPU from the loop's
thread then and there; the woken thread needed the GIL the loop still held, and both waited for the loop's next
time slice. Measured with two receive workers on two cores: a hand-over to the store's writer cost the loop
~260 µs of wall time; with SCHED_BATCH, ~50 µs. A batch thread still gets its fair share of the CPU: only the
wake-up preemption goes.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

__all__ = ["batch_thread", "batch_executor"]


def batch_thread() -> None:
    """Put the calling thread under SCHED_BATCH (where the system has no such policy, nothing changes)."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        pass


def batch_executor() -> ThreadPoolExecutor:
    """A default executor for an event loop whose threads are batch threads."""
    return ThreadPoolExecutor(thread_name_prefix="asyncio", initializer=batch_thread)
