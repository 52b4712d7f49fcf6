"""Sender ID (RFC 4406) and SPF (RFC 7208): the engine and helpers behind Exchange's Sender ID agent.

* :mod:`.spf` — ``check_host()`` for the ``spf``, ``mfrom`` and ``pra`` scopes (:class:`SpfChecker`,
  :class:`SpfResult`);
* :mod:`.records` — record selection per scope and parsing; :mod:`.macros` — macro strings;
* :mod:`.pra` — the Purported Responsible Address of a message (RFC 4407);
* :mod:`.origin` — the originating IP behind the organisation's own relays;
* :mod:`.received_spf` — the ``Received-SPF`` and ``Authentication-Results`` values;
* :mod:`.agent` — the agent itself (:class:`SenderIdAgent`, named in transport.yaml as
  ``agents.senderid:SenderIdAgent``); :mod:`.cli` — ``transport senderid test``.
"""

from .agent import SenderIdAgent
from .origin import originating_ip, parse_internal_servers
from .pra import PraResult, find_pra
from .received_spf import EXCHANGE_STATUS, authentication_results, received_spf
from .spf import DOMAIN_DOES_NOT_EXIST, MALFORMED_DOMAIN, NOT_PERMITTED, SpfChecker, SpfResult

__all__ = [
    "DOMAIN_DOES_NOT_EXIST", "EXCHANGE_STATUS", "MALFORMED_DOMAIN", "NOT_PERMITTED", "PraResult", "SpfChecker",
    "SenderIdAgent", "SpfResult", "authentication_results", "find_pra", "originating_ip", "parse_internal_servers", "received_spf",
]
