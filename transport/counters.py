"""Performance counters, grouped in sets named as Exchange names them ("MSExchange Sender Id Agent")."""

from __future__ import annotations

from collections import defaultdict

__all__ = ["Counters"]


class Counters:
    """Monotonic counters per set; cheap enough to bump on the hot path (a dict add)."""

    def __init__(self) -> None:
        self._sets: dict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))

    def increment(self, counter_set: str, name: str, by: int = 1) -> None:
        self._sets[counter_set][name] += by

    def get(self, counter_set: str, name: str) -> int:
        return self._sets.get(counter_set, {}).get(name, 0)

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {s: dict(c) for s, c in sorted(self._sets.items())}
