"""One hub per data root: a second hub on the same `var/` refuses to start and names the running one."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from hubtools import TRANSPORT_BIN, REPO, HubProcess, free_port, subprocess_env, write_config


def test_a_second_hub_on_the_same_data_root_refuses_with_the_first_ones_pid(tmp_path: Path) -> None:
    first = write_config(tmp_path, {"receive": {"bindings": [f"127.0.0.1:{free_port()}"]}}, name="first.yaml")
    second = write_config(tmp_path, {"receive": {"bindings": [f"127.0.0.1:{free_port()}"]}}, name="second.yaml")
    hub = HubProcess(first).start()
    try:
        refused = subprocess.run([str(TRANSPORT_BIN), "run", "-c", str(second)], capture_output=True, text=True,
                                 cwd=str(REPO), env=subprocess_env(), timeout=30)
        assert refused.returncode == 1
        assert f"another hub (PID {hub.proc.pid}) is running on the data root {tmp_path / 'data'}" in refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        hub.signal(signal.SIGKILL)  # the kernel drops the lock with the process: no stale lock
        hub.wait()
        hub.stop()
    again = HubProcess(second).start()
    again.signal(signal.SIGTERM)
    assert again.wait() == 0
    again.stop()
