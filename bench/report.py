"""The results: markdown tables printed to stdout as each scenario finishes, then written to
`bench/results/<date>.md` with a header saying which machine, which code and which command produced them."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from . import REPO

__all__ = ["Report", "table", "fmt", "fmt_ms"]


def fmt(value: float | None, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{suffix}"


def fmt_ms(p50: float | None, p99: float | None) -> str:
    if p50 is None:
        return "n/a"
    return f"{p50:.1f} / {p99:.1f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A markdown table with columns padded so it also reads well in a terminal."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    return out


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


class Report:
    """Sections of markdown, echoed to stdout as they are added."""

    def __init__(self, argv: Sequence[str], quick: bool, smtp_source: str | None = None) -> None:
        self.smtp_source = smtp_source or shutil.which("smtp-source")
        self.started = dt.datetime.now()
        self.command = "python -m bench" + ("" if not argv else " " + shlex.join(argv))
        self.quick = quick
        self.sections: list[list[str]] = []
        self.verdicts: list[str] = []
        self.closing: list[str] = []
        self.results: dict[str, Any] = {}  # per scenario, what scripts read: written beside the markdown as JSON

    def header(self) -> list[str]:
        commit = _git("rev-parse", "--short", "HEAD") or "unknown"
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        changed = len(dirty.splitlines()) if dirty else 0
        load = os.getloadavg()
        lines = [
            f"# Benchmark results, {self.started:%Y-%m-%d %H:%M}",
            "",
            f"- command: `{self.command}`" + ("  (quick: tiny counts, for checking the bench works)" if self.quick else ""),
            f"- machine: {os.cpu_count()} CPU(s), {_cpu_model()}; load average at start {load[0]:.2f}",
            f"- Python {platform.python_version()} ({sys.implementation.name}), aiosmtpd {_version('aiosmtpd')},"
            f" uvloop {_version('uvloop')}, py-spy {'installed' if shutil.which('py-spy') or _bin('py-spy') else 'not installed'},"
            f" smtp-source {'at ' + self.smtp_source if self.smtp_source else 'not installed'}",
            f"- code: commit {commit}" + (f" with {changed} modified tracked file(s) in the working tree" if changed else ""),
        ]
        return lines

    def add(self, title: str, lines: Sequence[str]) -> None:
        section = [f"## {title}", "", *lines, ""]
        self.sections.append(section)
        print("\n".join(section), flush=True)

    def verdict(self, line: str) -> None:
        self.verdicts.append(line)

    def text(self) -> str:
        out = self.header() + [""]
        for s in self.sections:
            out += s
        if self.verdicts or self.closing:
            out += ["## Targets", ""]
            out += [f"- {v}" for v in self.verdicts]
            out += [""] + self.closing
        return "\n".join(out).rstrip() + "\n"

    def print_closing(self) -> None:
        if self.verdicts or self.closing:
            print("\n".join(["## Targets", ""] + [f"- {v}" for v in self.verdicts] + [""] + self.closing), flush=True)

    def write(self, folder: Path, name: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        tmp = path.with_suffix(".md.tmp")
        tmp.write_text(self.text(), encoding="utf-8")
        os.replace(tmp, path)
        if self.results:
            data = path.with_suffix(".json")
            data.write_text(json.dumps({"command": self.command, "started": self.started.isoformat(timespec="seconds"),
                                        **self.results}, indent=1) + "\n", encoding="utf-8")
        return path


def _bin(name: str) -> str | None:
    """A tool installed in this interpreter's environment (a venv's bin/ is not always on PATH)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None
