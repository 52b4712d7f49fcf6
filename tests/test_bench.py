"""`make bench` still works: the quick smtp scenario runs end to end and writes its table.

This catches a broken benchmark (a server that no longer starts, a table that lost its rows); it does not
assert speed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.targets import ServerProcess, Target, memory_folder, remove_left_on_disk

REPO = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^\| \((?P<key>[a-z])\) (?P<label>[^|]+?)\s+\| (?P<median>[\d,]+)\s+\|.*?\| (?P<ratio>\d+ %)\s+\| "
                 r"(?P<accepted>\d+)/(?P<sent>\d+)\s+\|", re.M)


def test_quick_smtp_scenario_writes_the_comparison_table(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scenario", "smtp", "--no-smtp-source", "--settle", "1",
         "--results-dir", str(tmp_path), "--workdir", str(tmp_path / "work")],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    # `--settle 1`: one probe of the disk before the first round (too short a limit to wait), said in the report
    assert re.search(r"creating an empty file under the work folder cost \d+ µs", out), out
    assert "## SMTP load: the comparison" in out
    rows = {m["key"]: m for m in ROW.finditer(out)}
    assert {"a", "b", "c"} <= set(rows), out
    assert rows["a"]["label"].startswith("bare aiosmtpd")
    assert rows["a"]["ratio"] == "100 %"
    for key in ("a", "b", "c"):
        assert int(rows[key]["accepted"]) > 0, f"({key}) accepted nothing:\n{out}"
    assert re.search(r"(MET|MISSED): full pipeline \(c\) at 10 sessions", out)
    ceiling = re.search(r"This machine's ceiling, 10 sessions × 4,096 B, a new connection per message: \(c\) and its"
                        r" load generator used (\d+\.\d\d) \+ (\d+\.\d\d) ms .* its (\d+) core\(s\) carry at most"
                        r" (\d+) msg/s", out)
    assert ceiling, out  # the cores' ceiling is the cores over the CPU that server and client spend per message
    server, client, cores, most = float(ceiling[1]), float(ceiling[2]), int(ceiling[3]), int(ceiling[4])
    assert abs(most - cores * 1000 / (server + client)) <= max(2, most * 0.02)
    assert re.search(r"Ratios to bare aiosmtpd \(a\), 10 sessions × 4,096 B: \(b\) \d+%, \(c\) \d+%", out)
    files = list(tmp_path.glob("*-smtp-quick.md"))
    assert len(files) == 1
    text = files[0].read_text()
    assert "# Benchmark results" in text and "| (c) hub, all agents" in text
    assert re.search(r"^\| Content Filter Agent\s+\| \d+ \(\d+\.\d%\)", text, re.M), text  # what each agent costs
    [data] = tmp_path.glob("*-smtp-quick.json")
    results = json.loads(data.read_text())["smtp"]
    assert results["a"]["agent_us_per_msg"] == {} and results["b"]["agent_us_per_msg"] == {}
    assert results["c"]["agent_us_per_msg"]["Content Filter Agent"] > 0 and results["c"]["msg_per_s"] > 0
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").glob("smtp-*")), "server data left behind"


def test_a_baseline_checkout_runs_as_target_p_in_the_same_rounds(tmp_path: Path) -> None:
    """`--baseline CHECKOUT`: the hub of another copy of the project (the before of a change) runs as (p),
    alternating with (a) and (c); a folder that is no checkout is refused before anything starts."""
    before = tmp_path / "before"
    for name in ("transport", "agents", "queues", "pickup", "replay", "examples", "transport.yaml"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, before / name)
    main = before / "transport" / "__main__.py"
    main.write_text('import sys; print("served by the baseline copy", file=sys.stderr)\n' + main.read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scenario", "smtp", "--no-smtp-source", "--targets", "a,c",
         "--reuse", "0", "--baseline", str(before), "--no-results-file", "--keep", "--workdir", str(tmp_path / "work")],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {m["key"]: m for m in ROW.finditer(proc.stdout)}
    assert set(rows) == {"a", "c", "p"}, proc.stdout
    assert rows["p"]["label"] == f"(c) at {before} (the baseline checkout)" and int(rows["p"]["accepted"]) > 0
    served = {p.parent.name for p in (tmp_path / "work").rglob("server.err") if "baseline copy" in p.read_text()}
    assert served and all(name.startswith("smtp-p-") for name in served), served  # (p), and only (p), ran the copy's code
    refused = subprocess.run([sys.executable, "-m", "bench", "--quick", "--baseline", str(tmp_path / "work")],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "is not a checkout of this project" in refused.stderr


def test_a_rounds_data_on_disk_stays_until_the_run_ends(tmp_path: Path) -> None:
    """A round's files deleted just before the next round would make the next round's files dearer to create
    (ext4 without a journal skips recently freed inodes one by one), so a round's data on disk goes when
    nothing more is measured; one in memory goes with its round."""
    memory = memory_folder()
    rounds = [ServerProcess(Target(key, key, "hub", in_memory=key == "m" and memory is not None), tmp_path / key)
              for key in ("c", "m")]
    for server in rounds:
        (server.data_root / "mailboxes").mkdir(parents=True)
        (server.data_root / "mailboxes" / "copy").write_bytes(b"x")
        server.workdir.mkdir(exist_ok=True)
        server.cleanup()
    assert (tmp_path / "c" / "var" / "mailboxes" / "copy").exists() and (tmp_path / "m").exists()
    if memory is not None:
        assert not rounds[1].data_root.parent.exists(), "a data root in memory outlived its round"
    remove_left_on_disk()
    assert not (tmp_path / "c").exists() and not (tmp_path / "m").exists()


def test_target_m_keeps_its_data_root_on_the_memory_file_system(tmp_path: Path) -> None:
    """(m) is (c) with its data root on tmpfs (/dev/shm): the queue, the Maildir and the logs are there, not
    under the work folder, and go with the round; the disk line gives the CPU a durable file costs."""
    memory = memory_folder()
    if memory is None:
        pytest.skip("no tmpfs at /dev/shm on this machine: (m) is skipped by the bench too")
    before, probes = set(memory.glob("bench-*")), set(memory.glob("fsync-probe-*"))
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scenario", "smtp", "--no-smtp-source", "--targets", "a,m",
         "--reuse", "0", "--no-results-file", "--keep", "--workdir", str(tmp_path / "work")],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {m["key"]: m for m in ROW.finditer(proc.stdout)}
    assert set(rows) == {"a", "m"} and int(rows["m"]["accepted"]) > 0, proc.stdout
    assert re.search(r"and \d+\.\d{3} ms of CPU per file \(\d+\.\d{3} ms on the memory file system\)", proc.stdout)
    assert "Without the disk, a new connection per message: (m)" in proc.stdout
    kept = set(memory.glob("bench-*")) - before
    try:
        assert set(memory.glob("fsync-probe-*")) <= probes, "the disk probe's files were left in memory (--keep)"
        assert len(kept) == 1, kept  # --keep: the round's data root stays, in memory
        [root] = kept
        assert list((root / "var" / "mailboxes" / "alice@contoso.com" / "new").iterdir())
        assert (root / "var" / "queue" / "mail.que").exists()
        assert not list((tmp_path / "work").rglob("mail.que")), "a queue database under the work folder"
    finally:
        for path in kept:
            shutil.rmtree(path, ignore_errors=True)


def _smtp_source() -> str | None:
    return shutil.which("smtp-source") or next((p for p in ("/usr/sbin/smtp-source",) if Path(p).exists()), None)


@pytest.mark.skipif(_smtp_source() is None and not os.environ.get("CI"),
                    reason="Postfix's smtp-source is not installed (.ci/run installs Debian's postfix package)")
def test_smtp_source_loads_every_target_in_both_session_modes(tmp_path: Path) -> None:
    """With Postfix's smtp-source the smtp scenario loads (a) and (c) with a new connection per message and
    with each session's connection kept (`-d`): one table per mode, every message delivered, the hub process's
    CPU and smtp-source's beside the server's, and (c)'s verdicts against (a) in each mode."""
    tool = _smtp_source()
    assert tool is not None, "under CI smtp-source must be there: .ci/run installs it"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scenario", "smtp", "--targets", "a,c", "--smtp-source", tool,
         "--no-results-file", "--workdir", str(tmp_path / "work")], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    section = proc.stdout.split("## SMTP load with Postfix's smtp-source", 1)[1].split("\n## ", 1)[0]
    tables = section.split("`smtp-source -s ")[1:]
    assert len(tables) == 2, section
    assert " -l 4096`, a new connection per message" in tables[0]
    assert " -l 4096 -d`, each session's connection kept for all its messages (-d)" in tables[1]
    assert all("each server warmed up first with 10 messages" in t for t in tables), section  # not counted below
    for text in tables:
        row = re.search(r"^\| \(c\) hub, all agents[^|]*\| (?P<rate>[\d,]+) .*\| (?P<ok>\d+)/(?P<sent>\d+)\s+\|"
                        r" (?P<cpu>\d+\.\d\d)\s+\| (?P<own>\d+\.\d\d)\s+\| (?P<client>\d+\.\d\d)\s+\|$", text, re.M)
        assert row and row["ok"] == row["sent"] == "60", text
        assert 0 < float(row["own"]) <= float(row["cpu"]), text  # the hub's own process is part of the server
        assert float(row["client"]) > 0, text  # smtp-source's own CPU, beside the server's
        assert re.search(r"^\| \(a\) bare aiosmtpd[^|]*\| [\d,]+ .*\| 100 %\s+\| n/a\s+\|", text, re.M), text
    for mode in ("a new connection per message", "each session's connection kept for all its messages (-d)"):
        load = re.escape(f"10 sessions × 4,096 B with smtp-source, {mode}")
        assert re.search(rf"(MET|MISSED): full pipeline \(c\) at {load}, is \d+% of", proc.stdout), load
        assert re.search(rf"This machine's ceiling, {load}: .* its \d+ core\(s\) carry at most \d+", proc.stdout), load


def test_quick_relay_scenario_compares_a_smart_host_with_mailboxes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scenario", "relay", "--results-dir", str(tmp_path),
         "--workdir", str(tmp_path / "work")], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "## Relay: a smart host against mailboxes" in out
    assert re.search(r"\| \(b\) hub, no agents: to a mailbox \(Maildir\)\s+\| 60/60 ", out), out
    assert re.search(r"\| \(b\) relaying to a smart host [^|]+\| 60/60 ", out), out
    assert re.search(r"Relay to a smart host: \d+ msg/s end to end against \d+ msg/s to a mailbox", out)
