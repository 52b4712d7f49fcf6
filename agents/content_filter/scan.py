"""One scan: the rules that fired, the score, the SCL, and how each is written on the message.

The score is the sum of the fired rules' weights and the SCL is that score rounded (halves up) into 0–9, unless
a phrase rule decided it (a good phrase wins over a bad one). The explanation header and the tracking reason list
every rule that fired with its weight, so a reader sees how the SCL was reached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .message import MessageView
from .rules import Rule

__all__ = ["Hit", "Scan", "scan", "EXPLANATION_HEADER"]

EXPLANATION_HEADER = "X-Transport-SCL-Explanation"
"""Our own header: `SCL 5 (score 4.5): sender_id_softfail +2 (Sender ID SoftFail); …`."""


@dataclass(frozen=True, slots=True)
class Hit:
    """A rule that fired, with its weight and what it saw."""

    rule: str
    weight: float
    detail: str
    forces_scl: int | None = None

    def __str__(self) -> str:
        effect = f"SCL {self.forces_scl}" if self.forces_scl is not None else f"{self.weight:+g}"
        return f"{self.rule} {effect} ({self.detail})"


@dataclass(frozen=True, slots=True)
class Scan:
    hits: tuple[Hit, ...]
    score: float
    scl: int

    def explanation(self) -> str:
        """The explanation header's value (one line; the detail texts are short and never hold CR/LF)."""
        rules = "; ".join(str(h) for h in self.hits) or "no rule fired"
        return f"SCL {self.scl} (score {self.score:g}): {rules}"

    def as_dict(self) -> dict:
        return {"scl": self.scl, "score": self.score,
                "rules": [{"name": h.rule, "weight": h.weight, "detail": h.detail, "forces_scl": h.forces_scl}
                          for h in self.hits]}


def scan(rules: list[Rule], view: MessageView) -> Scan:
    hits = []
    for rule in rules:
        detail = rule.check(view)
        if detail is not None:
            hits.append(Hit(rule.name, rule.weight, " ".join(detail.split()), rule.forces_scl))
    score = round(sum(h.weight for h in hits), 2)
    forced = [h.forces_scl for h in hits if h.forces_scl is not None]
    scl = min(forced) if forced else max(0, min(9, math.floor(score + 0.5)))
    return Scan(tuple(hits), score, scl)
