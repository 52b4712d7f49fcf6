"""A guard for tests of hostile input: the call must return, however long the old code would have run."""

from __future__ import annotations

import threading
from typing import Any, Callable


def returns_within(seconds: float, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args), run in a daemon thread; the test fails if it has not returned after `seconds`. A guard against
    a hang (hostile input that makes a pattern run for hours), not a speed target: a daemon thread still
    running does not hold up the rest of the suite."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, fn(*args)))
        except BaseException as e:
            outcome.append((False, e))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"{getattr(fn, '__qualname__', fn)} was still running after {seconds:g}s"
    ok, value = outcome[0]
    if not ok:
        raise value
    return value
