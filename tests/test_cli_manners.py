"""The `transport` command's manners: one sentence and exit 1 for a wrong request, quiet when its reader goes."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from pathlib import Path

from hubtools import REPO, TRANSPORT_BIN, run_cli, subprocess_env, write_config


def test_an_unknown_counter_set_is_an_error_that_lists_the_sets(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    counters = tmp_path / "data" / "logs" / "counters.json"
    counters.parent.mkdir(parents=True)
    counters.write_text(json.dumps({"counters": {"MSExchange Sender Id Agent": {"Messages Validated": 3}}}))
    result = run_cli("counters", "--set", "MSExchange Nothing", "-c", str(config))
    assert result.returncode == 1
    assert result.stderr.strip() == ("transport counters: no counter set 'MSExchange Nothing' (sets: "
                                     "'MSExchange Sender Id Agent')")
    found = run_cli("counters", "--set", "msexchange sender id agent", "--json", "-c", str(config))
    assert json.loads(found.stdout) == {"MSExchange Sender Id Agent": {"Messages Validated": 3}}


def test_output_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    """The reader goes away after a few bytes (as `head` does): the command ends without a traceback."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, 4096)  # smaller than the output, so the command must wait on us
    proc = subprocess.Popen([str(TRANSPORT_BIN), "check-config", "--defaults"], stdout=write_end,
                            stderr=subprocess.PIPE, cwd=str(REPO), env=subprocess_env(), text=True)
    os.close(write_end)
    first = os.read(read_end, 100)
    os.close(read_end)
    _, err = proc.communicate(timeout=30)
    assert first.startswith(b"organization:")
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 141


def test_the_configuration_goes_before_or_after_an_action(tmp_path: Path) -> None:
    """`transport content-filter -c FILE test …` and `transport content-filter test -c FILE …` read the same file."""
    other = tmp_path / "elsewhere" / "transport.yaml"
    other.parent.mkdir()
    other.write_bytes((REPO / "transport.yaml").read_bytes().replace(b"contoso quarterly report", b"not in the mail"))
    (other.parent / "examples").symlink_to(REPO / "examples")
    msg = str(REPO / "examples" / "eml" / "legitimate.eml")
    before = run_cli("content-filter", "-c", str(other), "test", msg, "--json")
    after = run_cli("content-filter", "test", "-c", str(other), msg, "--json")
    shipped = run_cli("content-filter", "test", msg, "--json")  # ./transport.yaml (the command runs in the repo)
    assert before.returncode == after.returncode == shipped.returncode == 0, (before.stderr, after.stderr)
    assert json.loads(before.stdout) == json.loads(after.stdout)
    assert json.loads(before.stdout) != json.loads(shipped.stdout)  # a different file was read
