"""Exchange's rules for a Replay directory file: resubmitted exactly as its X-header envelope says.

The envelope comes only from X-Sender and X-Receiver (see replay.format); To, Cc and From are left alone and
play no part in delivery, Bcc is dropped. Files this hub wrote (`transport message export`, X-CreatedBy naming
it) are trusted and keep their organisation headers (SCL, AuthAs, …); any other file, an Exchange export
included, is untrusted: it loses its X-MS-Exchange-Organization-* headers, then gets the stamps of an
anonymous submission. Each replayed message
gets `Received: from <this hub> by Replay …` on top.
"""

from __future__ import annotations

from pickup.rules import Conversion, DirectoryRules
from transport.core.errors import BadFileError
from pickup.session import simulated_session
from transport.core.mailitem import Source
from transport.core.headers import ORGANIZATION_HEADER_PREFIX

from transport.core.replay_format import ReplayFormatError, parse

__all__ = ["ReplayRules"]


class ReplayRules(DirectoryRules):
    """Exchange's Replay directory rules (see the module docstring)."""

    source = Source.REPLAY
    received_by = "Replay"

    def convert(self, raw: bytes, name: str) -> Conversion:
        self.check_shape(raw)
        try:
            replay = parse(raw)
        except ReplayFormatError as e:
            raise BadFileError(str(e)) from None
        item = replay.item
        trusted = replay.written_by(self.config.receive.fqdn)
        item.session = simulated_session(item, name, self.is_internal, item.session.helo, item.session.client_ip)
        item.remove_headers(["bcc"])
        if not trusted:
            item.remove_headers([ORGANIZATION_HEADER_PREFIX], prefix=True)
        return Conversion(item, self.received(self.config.receive.fqdn), trusted=trusted)
