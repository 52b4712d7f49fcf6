"""The content filter (Exchange's Content Filter agent): every message gets an SCL from named, weighted rules.

* :mod:`.rules` — the rules (phrases, Sender ID, other agents' stamps, header and body heuristics);
* :mod:`.message` — the parsed view of a message the rules read; :mod:`.scan` — score, SCL and explanation;
* :mod:`.config` — Set-ContentFilterConfig; :mod:`.agent` — the agent (named in transport.yaml as
  ``agents.content_filter:ContentFilterAgent``); :mod:`.cli` — ``transport content-filter test``.
"""

from .agent import COUNTERS, ContentBypass, ContentFilterAgent
from .config import ContentFilterConfig
from .scan import EXPLANATION_HEADER, Hit, Scan

__all__ = ["COUNTERS", "ContentBypass", "ContentFilterAgent", "ContentFilterConfig", "EXPLANATION_HEADER", "Hit", "Scan"]
