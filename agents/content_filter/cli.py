"""`transport content-filter train --ham DIR --spam DIR [--reset] [--json]`: teach the Bayes classifier.

It reads Maildir folders (their `cur/` and `new/`) or folders of `.eml` files and adds what it learns to the
classifier's database under the data root (`bayes_database`); a running hub reads it when it starts. (`content-filter
test`, a view of `transport trace`, is beside the trace.)
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

from pydantic import ValidationError
from tqdm import tqdm

from agents import MailItem
from transport.core.commands import arguments, command, load
from transport.core.config import AgentEntry, TransportConfig
from transport.core.errors import AgentLoadError, ConfigError, TransportError
from transport.core.headers import not_a_message
from transport.core.pipeline import resolve_class

from .agent import ContentFilterAgent
from .bayes import Classifier, tokens
from .config import ContentFilterConfig
from .message import MessageView


def _args(p: argparse.ArgumentParser) -> None:
    p.description = "Each DIR is a Maildir folder (its cur/ and new/) or a folder of .eml files."
    p.add_argument("--ham", action="append", default=[], type=Path, metavar="DIR", help="good mail (repeatable)")
    p.add_argument("--spam", action="append", default=[], type=Path, metavar="DIR", help="spam (repeatable)")
    p.add_argument("--reset", action="store_true", help="forget what was learnt before")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _is_content_filter(entry: AgentEntry) -> bool:
    try:
        return entry.enabled and issubclass(resolve_class(entry.cls), ContentFilterAgent)
    except AgentLoadError:
        return False


def _content_filter_entry(config: TransportConfig) -> int:
    """The index of the enabled content filter among the configuration's agents; ConfigError when there is none."""
    mine = next((i for i, e in enumerate(config.agents) if _is_content_filter(e)), None)
    if mine is None:
        raise ConfigError(f"{config.locate('agents')}: no content filter agent is configured "
                          "(agents.content_filter:ContentFilterAgent)")
    return mine


def message_files(folder: Path) -> list[Path]:
    """A Maildir's messages (cur/ and new/), or the .eml files of a folder; TransportError when it is neither."""
    if not folder.is_dir():
        raise TransportError(f"{folder}: not a folder")
    if (folder / "cur").is_dir() or (folder / "new").is_dir():
        return sorted(p for sub in ("cur", "new") if (folder / sub).is_dir() for p in (folder / sub).iterdir() if p.is_file())
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".eml")


def _filter_config(config: TransportConfig) -> ContentFilterConfig:
    index = _content_filter_entry(config)
    try:
        return ContentFilterConfig.model_validate(config.agents[index].config, context={"transport": config})
    except ValidationError as e:
        raise ConfigError(f"{config.locate('agents', index, 'config')}: agents.{index}.config: "
                          f"{e.errors()[0]['msg'].removeprefix('Value error, ')}") from None


@command("content-filter train", "teach the content filter's Bayes classifier from folders of ham and spam")
@arguments(_args)
def cmd_train(args: argparse.Namespace) -> int:
    config = load(args)
    if not args.ham and not args.spam:
        raise TransportError("give at least one --ham or --spam folder")
    path = config.data_root / _filter_config(config).bayes_database
    try:
        classifier = Classifier(path, read=not args.reset)
    except sqlite3.DatabaseError as e:
        raise TransportError(f"{path}: not a Bayes database ({e}); use --reset to start a new one") from None
    work = [(f, False) for d in args.ham for f in message_files(d)] + [(f, True) for d in args.spam for f in message_files(d)]
    learnt, skipped = {False: 0, True: 0}, []
    for file, spam in tqdm(work, desc="training", unit="msg", file=sys.stderr, disable=None):
        try:
            raw = file.read_bytes()
        except OSError as e:
            skipped.append(f"{file}: {e.strerror}")
            continue
        problem = not_a_message(raw)
        if problem:
            skipped.append(f"{file}: {problem}")
            continue
        classifier.learn(tokens(MessageView.of(MailItem("", [], raw), raw)), spam)
        learnt[spam] += 1
    classifier.save()
    summary = {"ham": learnt[False], "spam": learnt[True], "skipped": skipped, "database": str(path),
               "total_ham": classifier.ham, "total_spam": classifier.spam, "tokens": len(classifier.counts)}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    print(f"learnt {learnt[False]} ham and {learnt[True]} spam ({len(skipped)} skipped); the classifier now knows "
          f"{classifier.ham} ham, {classifier.spam} spam and {len(classifier.counts)} tokens: {path}")
    return 0
