"""One scan: the rules that fired, the score, the SCL, and how each is written on the message.

The score is the sum of the fired rules' weights and the SCL is that score rounded (halves up) into 0–9, unless
a phrase rule decided it (a good phrase wins over a bad one). The PCL (phishing confidence, 1–8) is 1 plus the
weights of the phishing rules that fired, rounded the same way: 1–3 is Neutral, 4–8 Suspicious, as Exchange
reads it. The explanation header and the tracking reason list every rule that fired with its weight, so a reader
sees how the SCL was reached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .message import MessageView
from .rules import Rule

__all__ = ["Hit", "Scan", "scan", "EXPLANATION_HEADER"]

SUSPICIOUS_PCL = 4
EXPLANATION_HEADER = "X-Transport-SCL-Explanation"
"""Our own header: `SCL 5 (score 4.5): sender_id_softfail +2 (Sender ID SoftFail); …`."""


@dataclass(frozen=True, slots=True)
class Hit:
    """A rule that fired, with its weight and what it saw."""

    rule: str
    weight: float
    detail: str
    forces_scl: int | None = None
    phishing: bool = False

    def __str__(self) -> str:
        effect = f"SCL {self.forces_scl}" if self.forces_scl is not None else f"{self.weight:+g}"
        return f"{self.rule} {effect} ({self.detail})"


@dataclass(frozen=True, slots=True)
class Scan:
    hits: tuple[Hit, ...]
    score: float
    scl: int
    pcl: int = 1

    @property
    def suspicious(self) -> bool:
        """PCL 4–8: Exchange's PhishingLevel SUSPICIOUS."""
        return self.pcl >= SUSPICIOUS_PCL

    def explanation(self) -> str:
        """The explanation header's value (one line; the detail texts are short and never hold CR/LF)."""
        rules = "; ".join(str(h) for h in self.hits) or "no rule fired"
        return f"SCL {self.scl} (score {self.score:g}): {rules}"

    def as_dict(self) -> dict:
        return {"scl": self.scl, "score": self.score, "pcl": self.pcl,
                "rules": [{"name": h.rule, "weight": h.weight, "detail": h.detail, "forces_scl": h.forces_scl,
                           "phishing": h.phishing} for h in self.hits]}


def _level(value: float, low: int, high: int) -> int:
    return max(low, min(high, math.floor(value + 0.5)))


def scan(rules: list[Rule], view: MessageView) -> Scan:
    hits = []
    for rule in rules:
        fired = rule.weigh(view)
        if fired is not None:
            hits.append(Hit(rule.name, fired[0], " ".join(fired[1].split()), rule.forces_scl, rule.phishing))
    score = round(sum(h.weight for h in hits), 2)
    forced = [h.forces_scl for h in hits if h.forces_scl is not None]
    scl = min(forced) if forced else _level(score, 0, 9)
    pcl = _level(1 + sum(h.weight for h in hits if h.phishing), 1, 8)
    return Scan(tuple(hits), score, scl, pcl)
