"""The metrics endpoint scraped over HTTP after traffic, `transport stats` against a running hub (and without one),
and `transport pipeline --json` with the running hub's calls and errors per agent."""

from __future__ import annotations

import asyncio
import json

from hubtools import agent, free_port, make_message, run_cli, running_hub, send
from transport.stats_cli import scrape

METRICS = {"metrics": {"enabled": True, "binding": "127.0.0.1:0"}}
CONTENT_FILTER = agent("agents.content_filter:ContentFilterAgent", 2)


def value(samples: dict, name: str, **labels: str) -> float:
    return sum(s["value"] for s in samples.get(name, []) if all(s["labels"].get(k) == v for k, v in labels.items()))


async def test_metrics_scraped_over_http_after_traffic(tmp_path):
    extra = METRICS | {"agents": [agent("hubtools:Crash", 1, events=["on_rcpt_to"]), CONTENT_FILTER]}
    async with running_hub(tmp_path, extra) as hub:
        url = "http://%s:%d/metrics" % hub.metrics_address
        before = await asyncio.to_thread(scrape, url)
        assert value(before, "transport_messages_received_total") == 0
        assert value(before, "transport_queue_length", queue="Submission") == 0
        port = hub.addresses[0][1]
        await send(port, "john@fabrikam.test", ["alice@contoso.com", "bob@contoso.com"], make_message(message_id="<m1@x>"))
        await send(port, "john@fabrikam.test", ["nobody@contoso.com"], make_message(message_id="<m2@x>"))
        assert await hub.idle()
        after = await asyncio.to_thread(scrape, url)
    assert value(after, "transport_messages_received_total") == 3  # the two sent, and the NDR for nobody@
    assert value(after, "transport_messages_delivered_total") == 2
    assert value(after, "transport_messages_failed_total") == 1
    assert value(after, "transport_delivery_latency_seconds_count") == 2  # one per copy
    assert value(after, "transport_delivery_latency_seconds_bucket", le="+Inf") == 2
    assert value(after, "msexchange_content_filter_agent_total", counter="Messages Scanned") == 2
    assert value(after, "transport_agent_errors_total", agent="Test Crasher") == 3  # one per RCPT
    assert value(after, "transport_agent_calls_total", agent="Content Filter Agent") == 2
    assert "process_resident_memory_bytes" in after


async def test_stats_command_and_pipeline_counts(tmp_path):
    async with running_hub(tmp_path, METRICS | {"agents": [CONTENT_FILTER]}) as hub:
        await send(hub.addresses[0][1], "john@fabrikam.test", ["alice@contoso.com"], make_message())
        assert await hub.idle()
        url = "http://%s:%d/metrics" % hub.metrics_address
        table = await asyncio.to_thread(run_cli, "stats", "-c", str(tmp_path / "transport.yaml"), "--url", url)
        as_json = await asyncio.to_thread(run_cli, "stats", "-c", str(tmp_path / "transport.yaml"), "--url", url, "--json")
    assert table.returncode == 0, table.stderr
    assert any(line.split()[:2] == ["transport_messages_received_total", "1"] for line in table.stdout.splitlines())
    assert json.loads(as_json.stdout)["transport_messages_delivered_total"] == [{"labels": {}, "value": 1.0}]
    [spent] = json.loads(as_json.stdout)["transport_agent_seconds_total"]
    assert spent["labels"] == {"agent": "Content Filter Agent"} and spent["value"] > 0  # it scanned one message
    rows = json.loads(run_cli("pipeline", "-c", str(tmp_path / "transport.yaml"), "--json").stdout)
    assert [(r["agent"], r["calls"], r["errors"]) for r in rows] == [("Content Filter Agent", 1, 0)]
    assert rows[0]["time_us"] > 0  # as the hub saved it at shutdown


def test_stats_without_a_hub():
    url = f"http://127.0.0.1:{free_port()}/metrics"
    done = run_cli("stats", "--url", url)
    assert done.returncode == 1
    assert f"no hub answers at {url}" in done.stderr and "metrics.enabled: true" in done.stderr


async def test_bad_binding_and_port_in_use(tmp_path):
    import socket

    import pytest

    from hubtools import write_config
    from transport.core.config import load_config
    from transport.core.errors import ConfigError, TransportError
    from transport.hub import Hub

    with pytest.raises(ConfigError, match=r"metrics\.binding: .*'nowhere' is not host:port"):
        load_config(write_config(tmp_path, {"metrics": {"enabled": True, "binding": "nowhere"}}))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        hub = Hub(load_config(write_config(tmp_path, {"metrics": {"enabled": True, "binding": f"127.0.0.1:{port}"}})))
        with pytest.raises(TransportError, match=f"metrics.binding: cannot listen on 127.0.0.1:{port}"):
            await hub.start()
        await hub.stop(grace=0)
