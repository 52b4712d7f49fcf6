"""`transport check-config` reports every problem in one run, from every stage, each at its line."""

from __future__ import annotations

from pathlib import Path

from hubtools import run_cli


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "transport.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_three_problems_from_three_stages_in_one_run(tmp_path: Path) -> None:
    config = _write(tmp_path, """\
data_root: var
receive:
  max_message_size: 10 parsecs
dns:
  zone_files: [missing.zone]
agents:
  - class: nowhere.at.all:Agent
  - class: agents.senderid:SenderIdAgent
    config:
      spoofed_domain_action: Shrug
""")
    result = run_cli("check-config", "-c", str(config))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 4, lines
    assert lines[0].startswith(f"{config}:3: receive.max_message_size: '10 parsecs' is not a size")
    assert any(line.startswith(f"{config}:5: dns.zone_files: ") and "missing.zone" in line for line in lines)
    assert any(line.startswith(f"{config}:7: agents.0.class: cannot import 'nowhere.at.all'") for line in lines)
    assert any(line.startswith(f"{config}:10: agents.1.config.spoofed_domain_action: ") for line in lines)
    assert "Traceback" not in result.stderr


def test_mailboxes_bindings_and_the_server_name_are_checked(tmp_path: Path) -> None:
    config = _write(tmp_path, """\
accepted_domains: [{domain: contoso.com}]
mailboxes:
  - address: Alice@contoso.com
  - address: alice@CONTOSO.com
  - address: bob@
receive:
  fqdn: ""
  bindings: ["127.0.0.1:2525", "127.0.0.1:2525"]
""")
    result = run_cli("check-config", "-c", str(config))
    assert result.returncode == 1
    problems = result.stderr
    assert f"{config}:5: mailboxes.2.address: 'bob@' is not an SMTP address" in problems
    assert f"{config}:7: receive.fqdn: the server's name (banner, EHLO reply, Received lines) cannot be empty" in problems
    assert f"{config}:8: receive.bindings: '127.0.0.1:2525' is listed twice" in problems
    fixed = _write(tmp_path, """\
accepted_domains: [{domain: contoso.com}]
mailboxes:
  - address: Alice@contoso.com
  - address: alice@CONTOSO.com
""")
    twice = run_cli("check-config", "-c", str(fixed))
    assert twice.returncode == 1
    assert twice.stderr.strip() == f"{fixed}:4: mailboxes.1.address: mailbox alice@contoso.com is listed twice"


def test_a_hub_with_no_receive_process_is_refused(tmp_path: Path) -> None:
    config = _write(tmp_path, "workers: 0\nhub_receives: false\n")
    result = run_cli("check-config", "-c", str(config))
    assert result.returncode == 1
    assert (f"{config}:2: hub_receives: with workers: 0 SMTP receive runs in the hub's process: hub_receives cannot "
            "be off") in result.stderr
    assert run_cli("check-config", "-c", str(_write(tmp_path, "workers: 1\nhub_receives: false\n"))).returncode == 0
