"""The content filter (Exchange's Content Filter agent): every message gets an SCL from named, weighted rules.

* :mod:`.rules` — the rules (phrases, Sender ID, other agents' stamps, header and body heuristics; `Rule` is the
  base of custom rules); :mod:`.bayes` — the optional naive Bayes classifier;
* :mod:`.message` — the parsed view of a message the rules read; :mod:`.scan` — score, SCL and explanation;
* :mod:`.config` — Set-ContentFilterConfig; :mod:`.agent` — the agent (named in transport.yaml as
  ``agents.content_filter:ContentFilterAgent``); :mod:`.cli` — ``transport content-filter train`` (``test`` is a view of ``transport trace``, in
  ``transport/trace_cli.py``).
"""

from .agent import COUNTERS, PCL_HEADER, ContentBypass, ContentFilterAgent
from .config import ContentFilterConfig
from .message import MessageView
from .rules import Rule
from .scan import EXPLANATION_HEADER, Hit, Scan

__all__ = ["COUNTERS", "PCL_HEADER", "ContentBypass", "ContentFilterAgent", "ContentFilterConfig", "EXPLANATION_HEADER",
           "Hit", "MessageView", "Rule", "Scan"]
