"""What every `transport` subcommand shares: the registry it joins, its configuration argument, tables.

A subcommand is defined beside the code it drives (`queues/cli.py`, `pickup/cli.py`, …) and registers itself
here with `@command`; `transport.cli.main` builds the parser from the registry. So the packages below the hub
add commands without importing the hub's command module.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .config import TransportConfig, load_config

__all__ = ["COMMANDS", "DEFAULT_CONFIG", "command", "arguments", "print_table", "load", "agent_import_path", "config_arg"]

DEFAULT_CONFIG = "transport.yaml"
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {}


def command(name: str, help: str) -> Callable:
    """Register a subcommand: the decorated function gets (args) and returns an exit code; `.arguments`
    is set with a second decorator-style call so each command keeps its options next to its code. A name of two
    words ("content-filter train") is an action of the first word's command, so its actions can live apart."""
    def wrap(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = (getattr(func, "arguments", lambda p: None), func, help)
        return func
    return wrap


def arguments(setup: Callable[[argparse.ArgumentParser], None]) -> Callable:
    def wrap(func: Callable) -> Callable:
        func.arguments = setup  # type: ignore[attr-defined]
        return func
    return wrap


def print_table(rows: list[dict[str, Any]], columns: Sequence[str], out: Any = None) -> None:
    """A plain aligned table (like Format-Table), columns in the order given."""
    out = out or sys.stdout
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip(), file=out)


def load(args: argparse.Namespace) -> TransportConfig:
    """Load the configuration; agents named `module:Class` are then importable from the configuration
    file's folder and the current folder, as users expect of a file sitting next to transport.yaml."""
    config = load_config(args.config)
    agent_import_path(args.config)
    return config


def agent_import_path(config_path: str | Path) -> None:
    """Agents named `module:Class` import from the configuration file's folder and the current folder."""
    for folder in (str(Path(config_path).resolve().parent), os.getcwd()):
        if folder not in sys.path:
            sys.path.insert(0, folder)


def config_arg(p: argparse.ArgumentParser, default: str = DEFAULT_CONFIG) -> None:
    p.add_argument("-c", "--config", default=default, help=f"configuration file (default: {DEFAULT_CONFIG})")
