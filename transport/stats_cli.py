"""`transport stats`: the running hub's live metrics, read from its endpoint (a table, or `--json`)."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from .core.commands import arguments, command, load, print_table
from .core.config import parse_binding
from .core.errors import TransportError

__all__ = ["cmd_stats", "scrape"]


def scrape(url: str, timeout: float = 5.0) -> dict[str, list[dict]]:
    """The endpoint's samples by metric: {name: [{"labels": {...}, "value": n}, …]} (histograms: their _bucket,
    _count and _sum samples)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode("utf-8")
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise TransportError(f"no hub answers at {url} ({reason}): is it running, with metrics.enabled: true?") from None
    out: dict[str, list[dict]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            out.setdefault(sample.name, []).append({"labels": dict(sample.labels), "value": sample.value})
    return out


@command("stats", "the running hub's live counters, queue lengths and latency (from its metrics endpoint)")
@arguments(lambda p: (p.add_argument("--url", help="the endpoint (default: http://<metrics.binding>/metrics)"),
                      p.add_argument("--json", action="store_true", help="print JSON")))
def cmd_stats(args: argparse.Namespace) -> int:
    config = load(args)
    url = args.url
    if url is None:
        host, port = parse_binding(config.metrics.binding)
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/metrics"
    samples = scrape(url)
    if args.json:
        print(json.dumps(samples, indent=2))
        return 0
    rows = [{"metric": name, "labels": ",".join(f"{k}={v}" for k, v in s["labels"].items()), "value": f"{s['value']:g}"}
            for name, values in samples.items() if not name.endswith("_bucket") for s in values]
    print_table(rows, ["metric", "labels", "value"])
    return 0
