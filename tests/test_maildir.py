"""transport.delivery.maildir: a batch of copies made durable in the right order, by syncfs or by fsync per file."""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from pathlib import Path

import pytest

from transport.core.mailitem import Spool
from transport.delivery import maildir
from transport.delivery.maildir import Copy, write_copies, write_side_by_side


def folders(root: Path, *names: str) -> list[tuple[Path, Path]]:
    made = []
    for name in names:
        for sub in ("tmp", "new"):
            (root / name / sub).mkdir(parents=True, exist_ok=True)
        made.append((root / name / "tmp", root / name / "new"))
    return made


def copy(tmp: Path, new: Path, name: str, body: bytes, spool: Spool | None = None) -> Copy:
    return Copy(str(tmp / name), str(new / name), [b"Return-Path: <a@b.test>\r\n", body], spool)


def listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


@pytest.fixture(params=["syncfs", "fsync"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of making a batch durable: this machine's syncfs (skipped where there is none) and fsync per
    file."""
    if request.param == "syncfs" and maildir.SYNCFS is None:
        pytest.skip("no syncfs that reports write errors here (Linux 5.8 or later)")
    if request.param == "fsync":
        monkeypatch.setattr(maildir, "SYNCFS", None)
    return request.param


async def test_every_copy_of_a_batch_lands_in_new_whole(tmp_path: Path, mode: str) -> None:
    """Copies in two mailboxes, one with a spooled body: each file in `new/` holds the trace line and the whole
    message, and nothing is left in `tmp/`."""
    (inbox_tmp, inbox_new), (junk_tmp, junk_new) = folders(tmp_path, "alice", "bob/.Junk")
    body = tmp_path / "spooled"
    body.write_bytes(b"x" * 300_000)
    copies = [copy(inbox_tmp, inbox_new, f"m{i}", b"Subject: %d\r\n\r\nbody\r\n" % i) for i in range(6)]
    copies.append(copy(junk_tmp, junk_new, "big", b"Subject: big\r\n\r\n", Spool(body, 300_000)))
    assert await write_side_by_side(copies) == [""] * 7
    assert listing(inbox_new) == [f"m{i}" for i in range(6)] and listing(inbox_tmp) == []
    assert (inbox_new / "m3").read_bytes() == b"Return-Path: <a@b.test>\r\nSubject: 3\r\n\r\nbody\r\n"
    assert (junk_new / "big").read_bytes() == b"Return-Path: <a@b.test>\r\nSubject: big\r\n\r\n" + b"x" * 300_000
    assert listing(junk_tmp) == []


def test_a_copy_that_cannot_be_written_fails_alone(tmp_path: Path, mode: str) -> None:
    """A copy whose mailbox folder is gone gets its error; the others of the batch are delivered."""
    [(tmp, new)] = folders(tmp_path, "alice")
    gone = tmp_path / "gone"
    errors = write_copies([copy(tmp, new, "a", b"\r\none\r\n"), copy(gone / "tmp", gone / "new", "b", b"\r\ntwo\r\n"),
                           copy(tmp, new, "c", b"\r\nthree\r\n")])
    assert errors[0] == errors[2] == "" and errors[1] == "No such file or directory"
    assert listing(new) == ["a", "c"]


def test_with_syncfs_the_files_are_durable_before_any_is_renamed_and_the_renames_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The order a crash must not undo: the first syncfs sees every file written in `tmp/` and none in `new/`
    (a name in new/ never points at bytes still in memory), the second sees them all in `new/`; one call per
    file system, however many folders the batch touched."""
    (a_tmp, a_new), (b_tmp, b_new) = folders(tmp_path, "alice", "bob")
    seen = []

    def syncfs(fd: int) -> int:
        seen.append((listing(a_tmp), listing(b_tmp), listing(a_new), listing(b_new)))
        return 0

    monkeypatch.setattr(maildir, "SYNCFS", syncfs)
    assert write_copies([copy(a_tmp, a_new, "1", b"\r\n1\r\n"), copy(b_tmp, b_new, "2", b"\r\n2\r\n"),
                         copy(a_tmp, a_new, "3", b"\r\n3\r\n")]) == ["", "", ""]
    assert seen == [(["1", "3"], ["2"], [], []), ([], [], ["1", "3"], ["2"])]


def test_a_failed_syncfs_fails_the_whole_batch_with_its_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write error the file system reports at syncfs (EIO, a full disk) means nothing of the batch is known
    to be on disk: write_copies raises, so the mailbox queue keeps every message of it for the next attempt."""
    [(tmp, new)] = folders(tmp_path, "alice")

    def failing(fd: int) -> int:
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(maildir, "SYNCFS", failing)
    with pytest.raises(OSError, match="syncfs of .*alice/tmp: Input/output error"):
        write_copies([copy(tmp, new, "a", b"\r\none\r\n")])
    assert listing(new) == []  # not renamed: its bytes were not known to be on disk


def test_syncfs_is_used_only_where_it_reports_write_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Linux before 5.8 returned 0 from syncfs whatever writeback met: there, and off Linux, fsync per file."""
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "h", "5.4.0-150-generic", "#1", "x86_64")))
    assert maildir._syncfs() is None
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "h", "5.8.0", "#1", "x86_64")))
    assert (maildir._syncfs() is not None) == (sys.platform == "linux")
