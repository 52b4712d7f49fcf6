"""Connection filtering (Exchange's Connection Filtering agent): IP Allow/Block lists and DNS list providers.

* :mod:`.ip_list` — list entries (addresses, ranges, CIDR, IPv6, expiry);
* :mod:`.providers` — allow/block list providers (RFC 5782 lookups, match rules, rejection text);
* :mod:`.agent` — the agent (``agents.connection_filter:ConnectionFilteringAgent``); :mod:`.cli` —
  ``transport connection-filter test``.
"""

from .agent import COUNTERS, ConnectionFilterConfig, ConnectionFilteringAgent
from .ip_list import IPListEntry
from .providers import ListProvider, ProviderMatch, query_name

__all__ = ["COUNTERS", "ConnectionFilterConfig", "ConnectionFilteringAgent", "IPListEntry", "ListProvider",
           "ProviderMatch", "query_name"]
