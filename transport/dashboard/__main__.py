"""`python -m transport.dashboard --config FILE --parent PID`: the dashboard process `transport run` starts
(see `transport.dashboard.process`); the pipeline table comes as one JSON line on standard input."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from transport.core.commands import agent_import_path
from transport.core.config import load_config
from transport.core.errors import TransportError

from .server import serve


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m transport.dashboard")
    parser.add_argument("--config", required=True)
    parser.add_argument("--parent", type=int, required=True, help="the hub's process id: the dashboard ends with it")
    args = parser.parse_args()
    try:
        config = load_config(args.config)
    except TransportError as e:
        print(f"cannot listen: {e}", flush=True)
        return 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole terminal: the hub stops us itself
    agent_import_path(args.config)  # a trace loads the configuration's agents, custom ones too
    return asyncio.run(serve(config, json.loads(sys.stdin.readline() or "[]"), args.parent))


if __name__ == "__main__":
    sys.exit(main())
