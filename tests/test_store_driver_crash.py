"""kill -9 while the store driver sends a full Outbox, three times, then a restart: every message is delivered
once, the Outbox is empty, and Sent Items holds one copy of each (see tests/test_crash_safety.py for SMTP and
Pickup)."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

from hubtools import HubProcess, drop_file, header_value, make_message, wait_file, write_config
from test_crash_safety import CYCLES, _assert_log_matches_the_mailbox, _delivered, _finish


def _sent_items(root: Path) -> Counter:
    cur = root / "mailboxes" / "bob@contoso.com" / ".Sent Items" / "cur"
    return Counter(header_value(p.read_bytes(), "Message-ID") for p in cur.iterdir()) if cur.is_dir() else Counter()


def test_sigkill_while_outbox_items_are_submitted_sends_each_once(tmp_path: Path) -> None:
    count = 300
    config = write_config(tmp_path, {"queue": {"durable": True, "batch_size": 16},
                                     "store_driver": {"poll_interval": 0.05}})
    root = tmp_path / "data"
    outbox = root / "mailboxes" / "bob@contoso.com" / ".Outbox" / "new"
    expected = {f"<o{i}@contoso.com>" for i in range(count)}
    for i in range(count):
        drop_file(outbox, f"o{i:03}.eml", make_message(f"outbox kill {i}", f"<o{i}@contoso.com>",
                                                        sender="bob@contoso.com"))
    for cycle in range(CYCLES):
        hub = HubProcess(config).start()
        try:
            target = (cycle + 1) * count // (CYCLES + 1)
            wait_file(lambda: len(_delivered(root)) >= target, timeout=60)
            hub.signal(signal.SIGKILL)  # while files are claimed, queued, moved to Sent Items and delivered
            assert hub.wait() == -signal.SIGKILL
        finally:
            hub.stop()
    assert len(_delivered(root)) < count, "the last kill came after everything was delivered"
    _finish(config, root, expected)
    assert not any(outbox.iterdir())
    assert not (root / "badmail").exists()
    _assert_log_matches_the_mailbox(root)
    sent = _sent_items(root)
    assert set(sent) == expected and [m for m, n in sent.items() if n > 1] == [], "Sent Items misses or doubles a copy"
