"""The hub's clock: where its time-driven parts read the time (retry, expiry and delay notices, arrival times,
the log files' dates and retention, the counters' saving).

The composition root hands one clock to all of them; it is the real time unless a test hands the hub a clock it
moves forward itself, so that a four-hour delay notice or a thirty-day retention is asserted to the second
without waiting for it. (The DNS cache takes a monotonic clock the same way: `transport.core.dns`.) Waits that
only pace a loop (the scheduler's tick, the housekeeping's) stay real: they say how often the time is read.
"""

from __future__ import annotations

import time
from typing import Callable

__all__ = ["Clock", "real_time"]

Clock = Callable[[], float]
"""Wall time in seconds since the epoch, as `time.time()` gives it."""

real_time: Clock = time.time
