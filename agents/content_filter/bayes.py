"""The optional statistical classifier: naive Bayes over a message's tokens, as SpamBayes and SpamAssassin's Bayes
do it, trained on the organisation's own ham and spam (`transport content-filter train`).

Each token's spam probability is Gary Robinson's: the raw ratio ``p = s/(s+h)`` of its spam and ham frequencies,
pulled towards 0.5 while it has been seen only a few times (``f = (S·X + n·p) / (S + n)``, S = 0.45, X = 0.5).
A message is judged by its most telling tokens (at most 150, each at least 0.1 away from 0.5), combined with
Fisher's chi-squared method as SpamBayes does: one test for the evidence of spam, one for ham, and the
message's probability ``(S − H + 1) / 2``. The counts live in one SQLite file under the data root.
"""

from __future__ import annotations

import contextlib
import math
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from .message import MessageView, url_host

__all__ = ["Classifier", "tokens"]

STRENGTH, NEUTRAL = 0.45, 0.5      # Robinson's s and x
MIN_DISTANCE, MAX_CLUES = 0.1, 150
_WORD = re.compile(r"[^\W_][\w'$€.-]{1,18}[^\W_]", re.UNICODE)


def tokens(view: MessageView) -> set[str]:
    """What the classifier counts: words of 3–20 characters of the subject and text (lower case), the subject's
    words again marked as such, the From domain, link hosts and attachment types."""
    out = {w.lower() for w in _WORD.findall(view.text)}
    out.update("subject:" + w.lower() for w in _WORD.findall(view.subject))
    if view.sender_domain:
        out.add("from:" + view.sender_domain)
    out.update("url:" + url_host(u) for u in view.urls)
    out.update("attachment:" + n.rpartition(".")[2].lower() for n in view.attachments if "." in n)
    return out


def _chi2q(x2: float, freedom: int) -> float:
    """P(chi² ≥ x2) for an even number of degrees of freedom (the series for the regularised gamma function)."""
    m = x2 / 2.0
    term = total = math.exp(-m)
    for i in range(1, freedom // 2):
        term *= m / i
        total += term
    return min(total, 1.0)


class Classifier:
    """Token counts in memory, read from and written to `path` (SQLite: one row per token, and the totals)."""

    def __init__(self, path: Path, read: bool = True) -> None:
        """The counts kept at `path` (none when it does not exist, or with read=False to start afresh)."""
        self.path = path
        self.ham = self.spam = 0
        self.counts: dict[str, list[int]] = {}  # token → [ham messages, spam messages] holding it
        if read and path.exists():
            self._read()

    def _read(self) -> None:
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            totals = dict(db.execute("SELECT kind, messages FROM totals"))
            self.ham, self.spam = totals.get("ham", 0), totals.get("spam", 0)
            self.counts = {t: [h, s] for t, h, s in db.execute("SELECT token, ham, spam FROM tokens")}

    def save(self) -> None:
        """Write every count (replacing the file's), in one transaction."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(self.path)) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS totals (kind TEXT PRIMARY KEY, messages INTEGER NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS tokens (token TEXT PRIMARY KEY, ham INTEGER NOT NULL, spam INTEGER NOT NULL)")
            db.execute("DELETE FROM tokens")
            db.executemany("INSERT INTO tokens VALUES (?, ?, ?)", ((t, h, s) for t, (h, s) in self.counts.items()))
            db.executemany("INSERT OR REPLACE INTO totals VALUES (?, ?)", (("ham", self.ham), ("spam", self.spam)))

    def learn(self, message_tokens: Iterable[str], spam: bool) -> None:
        index = 1 if spam else 0
        for token in message_tokens:
            self.counts.setdefault(token, [0, 0])[index] += 1
        if spam:
            self.spam += 1
        else:
            self.ham += 1

    def token_probability(self, token: str) -> float:
        """Robinson's f(w): NEUTRAL for a token never seen, nearer the evidence the more it has been seen."""
        ham, spam = self.counts.get(token, (0, 0))
        seen = ham + spam
        if not seen or not self.ham or not self.spam:
            return NEUTRAL
        ham_ratio, spam_ratio = ham / self.ham, spam / self.spam
        p = spam_ratio / (ham_ratio + spam_ratio)
        return (STRENGTH * NEUTRAL + seen * p) / (STRENGTH + seen)

    def spam_probability(self, message_tokens: Iterable[str]) -> tuple[float, int]:
        """(the message's spam probability 0–1, how many tokens decided it); 0.5 and 0 when none tells."""
        clues = sorted((abs(f - NEUTRAL), f) for f in map(self.token_probability, message_tokens)
                       if abs(f - NEUTRAL) >= MIN_DISTANCE)[-MAX_CLUES:]
        if not clues:
            return NEUTRAL, 0
        ham_evidence = sum(math.log(f) for _, f in clues)
        spam_evidence = sum(math.log(1.0 - f) for _, f in clues)
        n = 2 * len(clues)
        spam = 1.0 - _chi2q(-2.0 * spam_evidence, n)
        ham = 1.0 - _chi2q(-2.0 * ham_evidence, n)
        return (spam - ham + 1.0) / 2.0, len(clues)
