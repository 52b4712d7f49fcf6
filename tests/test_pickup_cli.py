"""`transport pickup drop FILE…`: atomic drops, and --wait reporting what became of each file (text and JSON)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from hubtools import messages, running_hub, write_config
from transport.cli import main

FAST = {"pickup": {"poll_interval": 0.05}, "replay": {"poll_interval": 0.05}}
GOOD = b"From: john@fabrikam.test\r\nTo: alice@contoso.com\r\nSubject: via the CLI\r\n\r\nHello\r\n"
BAD = b"Subject: nobody sent this\r\n\r\nHello\r\n"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    good, bad = tmp_path / "good.eml", tmp_path / "bad.txt"
    good.write_bytes(GOOD)
    bad.write_bytes(BAD)
    return good, bad


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = await asyncio.to_thread(main, list(argv))
    return code, capsys.readouterr().out


async def test_drop_and_wait_reports_queued_and_bad(tmp_path: Path, files: tuple[Path, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    async with running_hub(tmp_path, FAST) as hub:
        config = str(tmp_path / "transport.yaml")
        code, out = await run(capsys, "pickup", "drop", *map(str, files), "--wait", "--json", "-c", config)
        result = json.loads(out)
        assert code == 1  # one file went to badmail
        assert [(r["name"], r["status"]) for r in result] == [("good.eml", "queued"), ("bad.txt.eml", "bad")]
        assert isinstance(result[0]["internal_id"], int) and result[0]["internal_id"] > 0
        assert result[1]["reason"] == "there is no sender: neither From nor Sender holds an address"
        assert messages(hub, "alice@contoso.com")[0].endswith(b"Hello\r\n")

        code, out = await run(capsys, "pickup", "-c", config, "drop", str(files[0]), "--wait")
        assert code == 0
        lines = out.splitlines()
        assert lines[0].split() == ["file", "status", "detail"]
        assert lines[2].split()[1:3] == ["queued", f"InternalId={result[0]['internal_id'] + 1}"]


async def test_drop_into_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    envelope = tmp_path / "replay.eml"
    envelope.write_bytes(b"X-Sender: <john@fabrikam.test>\r\nX-Receiver: <bob@contoso.com>\r\n" + GOOD)
    async with running_hub(tmp_path, FAST) as hub:
        code, out = await run(capsys, "pickup", "drop", "--replay", str(envelope), "--wait", "--json",
                              "-c", str(tmp_path / "transport.yaml"))
        assert code == 0 and json.loads(out)[0]["status"] == "queued"
        assert messages(hub, "bob@contoso.com") and messages(hub, "alice@contoso.com") == []


def test_drop_without_a_hub_keeps_names_apart(tmp_path: Path, files: tuple[Path, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path))
    missing = str(tmp_path / "missing.eml")
    assert main(["pickup", "drop", str(files[0]), str(files[0]), "-c", config]) == 0
    assert main(["pickup", "drop", str(files[0]), missing, "-c", config, "--json"]) == 1
    out = capsys.readouterr().out
    pickup = tmp_path / "data" / "pickup"
    assert sorted(p.name for p in pickup.iterdir()) == ["good-1.eml", "good-2.eml", "good.eml"]
    assert (pickup / "good-2.eml").read_bytes() == GOOD
    assert f"dropped  {pickup / 'good-1.eml'}" in out
    result = json.loads(out[out.index("["):])
    assert [(r["name"], r["status"]) for r in result] == [("good-2.eml", "dropped"), ("", "error")]
    assert main(["pickup", "drop", str(files[0]), "-c", config, "--wait", "--timeout", "0.2"]) == 1
    assert "pending" in capsys.readouterr().out


def test_a_directory_that_is_off_is_a_readable_error(tmp_path: Path, files: tuple[Path, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path, {"replay": {"path": ""}}))
    assert main(["pickup", "drop", "--replay", str(files[0]), "-c", config]) == 1
    assert capsys.readouterr().err.strip().endswith("the Replay directory is off (replay.path is empty)")
