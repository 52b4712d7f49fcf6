"""kill -9, several times, under load: nothing acknowledged is lost, nothing is delivered twice, and the message
tracking log says exactly what the mailboxes hold.

A real hub process is killed with SIGKILL while it receives (over SMTP, ten sessions at once) or while it picks
up a folder of files, restarted, killed again, and finally left to finish. Then every message is counted in the
Maildir and in the tracking log.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

from hubtools import (
    HubProcess, drop_file, free_port, header_value, make_message, messages, smtp_load, tracking, wait_file, wait_for,
    write_config,
)

CYCLES = 3


def _delivered(root: Path) -> list[str]:
    return [header_value(m, "Message-ID") for m in messages(root, "alice@contoso.com")]


def _assert_log_matches_the_mailbox(root: Path) -> None:
    """One copy per message in the Maildir, one RECEIVE and one DELIVER row per copy, nothing else."""
    copies = Counter(_delivered(root))
    rows = tracking(root)
    receive = Counter(r["message-id"] for r in rows if r["event-id"] == "RECEIVE")
    deliver = Counter(r["message-id"] for r in rows if r["event-id"] == "DELIVER")
    assert [m for m, n in copies.items() if n > 1] == [], "messages delivered twice"
    assert receive == copies, "RECEIVE rows differ from what the Maildir holds"
    assert deliver == copies, "DELIVER rows differ from what the Maildir holds"


def _finish(config: Path, root: Path, expected: set[str]) -> None:
    """Start the hub once more, wait until everything expected is delivered, stop it cleanly."""
    hub = HubProcess(config).start()
    try:
        wait_file(lambda: expected <= set(_delivered(root)), timeout=60)
    finally:
        hub.signal(signal.SIGTERM)
        hub.wait()
        hub.stop()


def test_sigkill_during_smtp_load_loses_nothing_and_delivers_once(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, {"receive": {"bindings": [f"127.0.0.1:{port}"]}, "queue": {"durable": True}})
    root = tmp_path / "data"
    accepted: list[str] = []
    for cycle in range(CYCLES):
        hub = HubProcess(config).start()
        target = len(accepted) + 120

        async def load_then_kill() -> None:
            ids = [f"<c{cycle}n{n}@load.test>" for n in range(2000)]
            task = asyncio.create_task(smtp_load(port, ids, 10, accepted))
            await wait_for(lambda: len(accepted) >= target, timeout=60)
            hub.signal(signal.SIGKILL)  # mid-load: sessions are cut in every state
            await task

        try:
            asyncio.run(load_then_kill())
            assert hub.wait() == -signal.SIGKILL
        finally:
            hub.stop()
    _finish(config, root, set(accepted))
    assert len(accepted) >= CYCLES * 120
    assert set(accepted) - set(_delivered(root)) == set(), "acknowledged messages lost"
    _assert_log_matches_the_mailbox(root)


def test_sigkill_during_pickup_delivers_every_file_once(tmp_path: Path) -> None:
    count = 600  # a quarter (150 files) is left after the last kill, so a busy machine cannot finish them first
    config = write_config(tmp_path, {"queue": {"durable": True, "batch_size": 16},
                                     "pickup": {"poll_interval": 0.05, "max_messages_per_minute": 0}})
    root = tmp_path / "data"
    pickup = root / "pickup"
    for i in range(count):
        drop_file(pickup, f"k{i:03}.eml", make_message(subject=f"pickup kill {i}", message_id=f"<k{i}@pickup.test>"))
    for cycle in range(CYCLES):
        hub = HubProcess(config).start()
        try:
            target = (cycle + 1) * count // (CYCLES + 1)
            wait_file(lambda: len(_delivered(root)) >= target, timeout=60)
            hub.signal(signal.SIGKILL)  # while files are claimed, queued and delivered
            assert hub.wait() == -signal.SIGKILL
        finally:
            hub.stop()
    assert len(_delivered(root)) < count, "the last kill came after everything was delivered"
    _finish(config, root, {f"<k{i}@pickup.test>" for i in range(count)})
    assert not any(pickup.iterdir())
    assert not (root / "badmail").exists()
    _assert_log_matches_the_mailbox(root)
