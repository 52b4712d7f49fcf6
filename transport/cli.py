"""The `transport` command: run the hub, check a configuration, show the pipeline and the counters; the other
subcommands (queues, pickup, mailboxes, trace, track, stats, the agents' tests) register themselves from beside the
code they drive. Each subcommand lives in one function; `--json` where scripts read the output.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
import typing
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .core.commands import COMMANDS, agent_import_path, arguments, command, config_arg, load, print_table
from .core.config import TransportConfig
from .core.errors import AgentLoadError, ConfigError, TransportError
from .process_setup import EventLoop, configure_logging, loop_factory

__all__ = ["main"]


def _load_pipeline(config: TransportConfig) -> Any:
    """The agents as the hub would load them; problems become ConfigErrors pointing at their line."""
    from .core.agent import AgentContext
    from .core.counters import Counters
    from .core.pipeline import load_pipeline

    try:
        return load_pipeline(config.agents, AgentContext(config, make_resolver(config), Counters(), logging.getLogger()))
    except AgentLoadError as e:
        raise ConfigError(f"{config.locate(*e.path)}: {e}") from None


def make_resolver(config: TransportConfig) -> Any:
    """The DNS resolver of the configuration; an unreadable zone file is a configuration error."""
    from .core.dns import DnsError, DnsResolver

    try:
        return DnsResolver(config.dns)
    except DnsError as e:
        raise ConfigError(f"{config.locate('dns', 'zone_files')}: dns.zone_files: {e}") from None


# -- run ------------------------------------------------------------------------------------------------
@command("run", "start the hub and serve until SIGINT/SIGTERM")
@arguments(lambda p: (p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR"),
                      p.add_argument("--event-loop", choices=[e.value for e in EventLoop], default=EventLoop.AUTO.value,
                                     help="auto (uvloop when installed: pip install '.[speed]'), asyncio or uvloop")))
def cmd_run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    config = load(args)
    with asyncio.Runner(loop_factory=loop_factory(EventLoop(args.event_loop))) as runner:
        return runner.run(_serve(config, args.config))


async def _serve(config: TransportConfig, config_path: str) -> int:
    from .hub import Hub

    try:
        hub = Hub(config, dns=make_resolver(config))
    except AgentLoadError as e:
        raise ConfigError(f"{config.locate(*e.path)}: {e}") from None
    try:
        await hub.start()
    except OSError as e:
        await hub.stop(grace=0)
        raise ConfigError(f"{config.locate('receive', 'bindings')}: receive.bindings: cannot listen on "
                          f"{', '.join(config.receive.bindings)}: {e.strerror or e}") from None
    dashboard = await _start_dashboard(config, config_path, hub)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    metrics = f"; metrics on http://{hub.metrics_address[0]}:{hub.metrics_address[1]}/metrics" if hub.metrics_address else ""
    print(f"transport hub ready: SMTP on {', '.join(f'{h}:{p}' for h, p in hub.addresses)}; "
          f"{f'dashboard on {dashboard.url}; ' if dashboard else ''}data under {config.data_root}{metrics}", flush=True)
    await stop.wait()
    if dashboard is not None:
        await dashboard.stop()
    await hub.stop()
    return 0


async def _start_dashboard(config: TransportConfig, config_path: str, hub: Any) -> Any:
    """The web dashboard in a process of its own, when `dashboard.enabled`; a binding it cannot take stops the hub."""
    if not config.dashboard.enabled:
        return None
    from .dashboard.process import DashboardProcess

    dashboard = DashboardProcess(config, config_path, hub.pipeline.table())
    try:
        await dashboard.start()
    except ConfigError:
        await hub.stop(grace=0)
        raise
    return dashboard


# -- check-config ---------------------------------------------------------------------------------------
@command("check-config", "validate a configuration file (one line per problem, exit 1 if any)")
@arguments(lambda p: p.add_argument("--defaults", action="store_true", help="print every setting with its default and description"))
def cmd_check_config(args: argparse.Namespace) -> int:
    if args.defaults:
        _print_defaults(TransportConfig, "")
        for spec in BUILT_IN_AGENTS:  # each built-in agent's `config:` settings, under its class name
            module, _, name = spec.partition(":")
            print(f"agents[class={spec}].config:  # the {name} agent's settings")
            _print_defaults(getattr(importlib.import_module(module), name).Config, f"agents[class={spec}].config.")
        return 0
    from .config_check import check_config

    agent_import_path(args.config)
    config, problems = check_config(args.config)
    if config is None:
        raise ConfigError("\n".join(problems))
    print(f"{args.config}: OK ({len(config.accepted_domains)} accepted domain(s), {len(config.mailboxes)} mailbox(es), "
          f"{sum(a.enabled for a in config.agents)} agent(s) enabled)")
    return 0


def _print_defaults(model: type, prefix: str) -> None:
    from pydantic import BaseModel

    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        ann = field.annotation
        item = typing.get_args(ann)[0] if typing.get_origin(ann) is list and typing.get_args(ann) else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            print(f"{key}:  # {field.description or ''}")
            _print_defaults(ann, key + ".")
            continue
        if isinstance(item, type) and issubclass(item, BaseModel):  # a list of mappings: each entry's settings
            print(f"{key}:  # {field.description or ''} (a list; each entry:)")
            _print_defaults(item, key + ".")
            continue
        if field.is_required():
            print(f"{key} (required)  # {field.description or ''}")
            continue
        default = field.get_default(call_default_factory=True)
        if hasattr(default, "model_dump"):
            default = default.model_dump(mode="json")
        elif isinstance(default, list):
            default = [d.model_dump(mode="json", by_alias=True) if hasattr(d, "model_dump")
                       else getattr(d, "value", str(d)) for d in default]
        elif isinstance(default, Path):
            default = str(default)
        elif hasattr(default, "value"):
            default = default.value
        print(f"{key} = {json.dumps(default)}  # {field.description or ''}")


# -- pipeline -------------------------------------------------------------------------------------------
@command("pipeline", "list the events with their agents in order (like Get-TransportPipeline)")
@arguments(lambda p: p.add_argument("--json", action="store_true", help="print JSON"))
def cmd_pipeline(args: argparse.Namespace) -> int:
    from .core.counters import load_snapshot

    config = load(args)
    rows = _load_pipeline(config).table()
    saved = load_snapshot(config.data_root / "logs" / "counters.json").get("agents", {})
    for row in rows:  # the running hub's calls and errors, as it last saved them (every 2 s)
        row.update(saved.get(row["agent"], {}))
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("No transport agents are enabled.")
    else:
        print_table(rows, ["event", "agent", "priority", "kind", "on_error", "calls", "errors"])
    return 0


# -- counters -------------------------------------------------------------------------------------------
@command("counters", "show the performance counters the hub last saved (like Get-Counter)")
@arguments(lambda p: (p.add_argument("--set", help="only this counter set, e.g. 'MSExchange Sender Id Agent'"),
                      p.add_argument("--json", action="store_true", help="print JSON")))
def cmd_counters(args: argparse.Namespace) -> int:
    from .core.counters import load_snapshot

    config = load(args)
    data = load_snapshot(config.data_root / "logs" / "counters.json")
    sets = {k: v for k, v in data["counters"].items() if args.set is None or k.lower() == args.set.lower()}
    if args.set is not None and not sets:
        known = ", ".join(repr(s) for s in data["counters"]) or "none saved yet: is the hub running?"
        raise TransportError(f"no counter set {args.set!r} (sets: {known})")
    if args.json:
        print(json.dumps(sets, indent=2))
        return 0
    rows = [{"counter": f"\\{s}\\{name}", "value": value} for s, c in sets.items() for name, value in c.items()]
    if not rows:
        print("No counters yet (the hub saves them every 2 seconds while it runs).")
    else:
        print_table(rows, ["counter", "value"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transport", description="Exchange-style mail transport pipeline simulator")
    parser.add_argument("--version", action="version", version=f"transport {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    actions: dict[str, Any] = {}  # "content-filter test" and "content-filter train": actions of one command
    for name, (setup, func, help_) in COMMANDS.items():
        parent, _, action = name.partition(" ")
        if action:
            if parent not in actions:
                helps = "; ".join(h for n, (_, _, h) in COMMANDS.items() if n.startswith(parent + " "))
                group = sub.add_parser(parent, help=helps, description=helps)
                config_arg(group)  # `transport content-filter -c FILE test …` and `… test -c FILE …` both work
                actions[parent] = group.add_subparsers(dest="action", required=True)
            p = actions[parent].add_parser(action, help=help_, description=help_)
            config_arg(p, default=argparse.SUPPRESS)  # an action's -c only overrides the command's
        else:
            p = sub.add_parser(name, help=help_, description=help_)
            config_arg(p)
        setup(p)
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _import_command_modules()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ConfigError as e:  # already `file:line: key: problem` lines
        print(str(e), file=sys.stderr)
        return 1
    except TransportError as e:
        print(f"transport {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `transport … | head`: the reader has gone; end quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


BUILT_IN_AGENTS = ("agents.connection_filter:ConnectionFilteringAgent", "agents.sender_filter:SenderFilterAgent",
                   "agents.recipient_filter:RecipientFilterAgent", "agents.senderid:SenderIdAgent",
                   "agents.reverse_dns:ReverseDnsAgent", "agents.content_filter:ContentFilterAgent")
"""The agents shipped with the hub, named as transport.yaml names them (loaded by name: the hub never imports agents)."""


def _import_command_modules() -> None:
    """Subcommands defined beside the code they drive register themselves on import."""
    for module in ("agents.senderid.cli", "agents.connection_filter.cli", "agents.content_filter.cli", "transport.trace_cli",
                   "transport.tracking_cli",
                   "transport.stats_cli", "queues.cli", "pickup.cli", "transport.mailbox_cli"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name is None or not module.startswith(e.name):
                raise
