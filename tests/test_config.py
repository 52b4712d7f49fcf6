"""The configuration loader: defaults, sizes, and `file:line: key: problem` errors that point at the right line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from transport.core.errors import ConfigError
from transport.core.config import DomainType, ErrorPolicy, TransportConfig, load_config

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "transport.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return str(e.value)


# -- defaults --------------------------------------------------------------------------------------------


def test_empty_file_gives_exchange_defaults(tmp_path):
    cfg = load_config(write(tmp_path, ""))
    rc = cfg.receive
    assert rc.max_message_size == 36 * 1024 * 1024
    assert rc.max_header_size == 256 * 1024
    assert rc.max_recipients_per_message == 200
    assert rc.max_protocol_errors == 5
    assert rc.connection_inactivity_timeout == 300
    assert rc.bindings == ["127.0.0.1:2525"] and rc.fqdn == "hub.contoso.com"
    assert rc.tls.enabled is True and rc.tls.certificate is None
    assert cfg.organization.scl_junk_threshold == 4
    assert cfg.queue.poison_threshold == 2 and cfg.queue.durable is True
    assert [(d.domain, d.domain_type) for d in cfg.accepted_domains] == [("contoso.com", DomainType.AUTHORITATIVE)]
    assert cfg.mailboxes == [] and cfg.agents == []
    assert cfg.tracking.enabled and cfg.tracking.max_age_days == 30
    assert cfg.data_root == (tmp_path / "var").resolve()  # relative to the file, not the current folder


def test_the_demo_configuration_loads():
    cfg = load_config(REPO / "transport.yaml")
    assert cfg.mailbox("Alice@Contoso.com").display_name == "Alice Wilson"
    assert cfg.mailbox("postmaster@contoso.com").password is None
    assert cfg.receive.max_message_size == 36 * 1024 * 1024
    assert cfg.data_root == (REPO / "var").resolve()
    assert all(p.is_absolute() for p in cfg.dns.zone_files)


def test_agent_entry_defaults(tmp_path):
    cfg = load_config(write(tmp_path, """\
        agents:
          - class: examples.recipient_block:RecipientBlockAgent
        """))
    [entry] = cfg.agents
    assert (entry.enabled, entry.priority, entry.on_error, entry.name, entry.config) == \
        (True, 100, ErrorPolicy.FAIL_OPEN, None, {})


def test_names_are_normalised(tmp_path):
    cfg = load_config(write(tmp_path, """\
        accepted_domains:
          - domain: " Contoso.COM. "
          - {domain: fabrikam.test, type: InternalRelay}
        mailboxes:
          - address: " Alice@Contoso.com "
        """))
    assert [d.domain for d in cfg.accepted_domains] == ["contoso.com", "fabrikam.test"]
    assert cfg.accepted_domain("FABRIKAM.test").domain_type is DomainType.INTERNAL_RELAY
    assert cfg.accepted_domain("northwind.test") is None
    assert cfg.mailboxes[0].address == "alice@contoso.com"
    assert cfg.mailbox("ALICE@contoso.com") is cfg.mailboxes[0]
    assert cfg.mailbox("bob@contoso.com") is None


def test_a_directory_of_thousands_of_mailboxes_is_looked_up_by_address_and_follows_changes(tmp_path):
    """`mailbox()` answers from an index (every message asks it several times); a mailbox added to the list, or
    a list replaced, is seen at the next look-up."""
    from transport.core.config import Mailbox

    lines = "".join(f"  - address: User{i}@Contoso.com\n" for i in range(5000))
    cfg = load_config(write(tmp_path, "mailboxes:\n" + lines))
    assert cfg.mailbox("USER4999@contoso.com") is cfg.mailboxes[4999] and cfg.mailbox("user7@CONTOSO.com") is cfg.mailboxes[7]
    assert cfg.mailbox("user5000@contoso.com") is None
    cfg.mailboxes.append(Mailbox(address="user5000@contoso.com"))
    assert cfg.mailbox("user5000@contoso.com") is cfg.mailboxes[-1]
    cfg.mailboxes = [Mailbox(address="solo@contoso.com")]
    assert cfg.mailbox("solo@contoso.com") is cfg.mailboxes[0] and cfg.mailbox("user1@contoso.com") is None


def test_paths_resolve_against_the_file(tmp_path):
    cfg = load_config(write(tmp_path, """\
        data_root: data
        receive:
          tls: {certificate: certs/hub.pem, key: /etc/hub.key}
        dns:
          zone_files: [zones/a.zone]
        """))
    assert cfg.data_root == (tmp_path / "data").resolve()
    assert cfg.receive.tls.certificate == (tmp_path / "certs" / "hub.pem").resolve()
    assert cfg.receive.tls.key == Path("/etc/hub.key")
    assert cfg.dns.zone_files == [(tmp_path / "zones" / "a.zone").resolve()]


# -- sizes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("10485760", 10485760), ("10MB", 10 * 1024**2), ("256 KB", 256 * 1024), ("64kb", 64 * 1024),
    ("1GB", 1024**3), ("1.5MB", int(1.5 * 1024**2)), ("512B", 512), ("'2048'", 2048), ("10K", 10 * 1024),
])
def test_sizes(tmp_path, text, expected):
    cfg = load_config(write(tmp_path, f"receive:\n  max_message_size: {text}\n"))
    assert cfg.receive.max_message_size == expected


@pytest.mark.parametrize("text", ["ten megabytes", "10TB", "-5MB", "MB"])
def test_bad_size_string(tmp_path, text):
    path = write(tmp_path, f"""\
        organization:
          name: Contoso
        receive:
          fqdn: hub.contoso.com
          max_header_size: {text}
        """)
    message = error_of(path)
    assert message.startswith(f"{path}:5: receive.max_header_size: ")
    assert "is not a size (use bytes or a number with KB, MB or GB)" in message
    assert "\n" not in message


def test_negative_size_number(tmp_path):
    path = write(tmp_path, "receive:\n  max_message_size: -1\n")
    assert error_of(path) == f"{path}:2: receive.max_message_size: Input should be greater than or equal to 0"


# -- errors point at their line --------------------------------------------------------------------------


def test_unknown_key_nested(tmp_path):
    path = write(tmp_path, """\
        # comment lines count too
        receive:
          name: Default Frontend

          bindngs: ["127.0.0.1:2525"]
        """)
    assert error_of(path) == f"{path}:5: receive.bindngs: unknown setting"


def test_unknown_key_top_level(tmp_path):
    path = write(tmp_path, "organization:\n  name: Contoso\nmailbox:\n  - address: a@contoso.com\n")
    assert error_of(path) == f"{path}:3: mailbox: unknown setting"


def test_unknown_key_in_a_list_item(tmp_path):
    path = write(tmp_path, """\
        mailboxes:
          - address: alice@contoso.com
          - address: bob@contoso.com
            pasword: x
        """)
    assert error_of(path) == f"{path}:4: mailboxes.1.pasword: unknown setting"


def test_wrong_type(tmp_path):
    path = write(tmp_path, "receive:\n  max_recipients_per_message: many\n")
    message = error_of(path)
    assert message.startswith(f"{path}:2: receive.max_recipients_per_message: Input should be a valid integer")


def test_out_of_range(tmp_path):
    path = write(tmp_path, "queue:\n  poison_threshold: 11\n")
    assert error_of(path) == f"{path}:2: queue.poison_threshold: Input should be less than or equal to 10"


def test_several_problems_one_line_each(tmp_path):
    path = write(tmp_path, """\
        receive:
          max_message_size: huge
          colour: blue
        agents:
          - class: x:Y
            on_error: explode
        """)
    lines = error_of(path).splitlines()
    assert len(lines) == 3
    assert lines[0] == f"{path}:2: receive.max_message_size: 'huge' is not a size (use bytes or a number with KB, MB or GB)"
    assert lines[1] == f"{path}:3: receive.colour: unknown setting"
    assert lines[2].startswith(f"{path}:6: agents.0.on_error: Input should be 'fail_open' or 'fail_closed'")


def test_mailbox_outside_the_accepted_domains(tmp_path):
    path = write(tmp_path, """\
        accepted_domains:
          - domain: contoso.com
        mailboxes:
          - address: alice@contoso.com
          - address: eve@fabrikam.test
            display_name: Eve
        """)
    message = error_of(path)
    assert message == (f"{path}:5: mailboxes.1.address: mailbox eve@fabrikam.test is not in an accepted domain"
                       f" (contoso.com)")


def test_mailbox_without_at_sign(tmp_path):
    path = write(tmp_path, "mailboxes:\n  - address: alice\n")
    assert error_of(path) == f"{path}:2: mailboxes.0.address: 'alice' is not an SMTP address"


def test_bad_binding_and_internal_server(tmp_path):
    path = write(tmp_path, """\
        internal_smtp_servers: [10.0.0.0/8, not-an-ip]
        receive:
          bindings: ["127.0.0.1"]
        """)
    lines = error_of(path).splitlines()
    assert lines == [
        f"{path}:1: internal_smtp_servers: 'not-an-ip' is not an IP address or CIDR range",
        f"{path}:3: receive.bindings: '127.0.0.1' is not host:port",
    ]


def test_agent_name_too_long(tmp_path):
    path = write(tmp_path, f"agents:\n  - class: a:B\n    name: {'n' * 65}\n")
    assert error_of(path).startswith(f"{path}:3: agents.0.name: String should have at most 64 characters")


def test_yaml_syntax_error(tmp_path):
    path = write(tmp_path, "receive:\n  name: [unclosed\n  fqdn: x\n")
    message = error_of(path)
    assert message.startswith(f"{path}:") and ": (yaml): " in message
    assert int(message.split(":")[1]) in (2, 3, 4)


def test_top_level_must_be_a_mapping(tmp_path):
    path = write(tmp_path, "- just\n- a list\n")
    assert error_of(path) == f"{path}:1: (top level): expected a mapping of settings, got list"


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    assert error_of(path) == f"{path}: cannot read: No such file or directory"


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("organization:\n  name: Soci\xe9t\xe9\n".encode("latin-1"))
    assert error_of(path).startswith(f"{path}: not UTF-8 text")


def test_locate_finds_the_line_of_a_setting(tmp_path):
    cfg = load_config(write(tmp_path, """\
        receive:
          fqdn: hub.contoso.com
        agents:
          - class: examples.recipient_block:RecipientBlockAgent
            config:
              blocked: [bob@contoso.com]
        """))
    assert cfg.locate("agents", 0, "config", "blocked").endswith("transport.yaml:6")
    assert cfg.locate("agents", 0, "config", "missing").endswith("transport.yaml:5")
    assert cfg.locate("receive", "fqdn").endswith("transport.yaml:2")


def test_model_defaults_without_a_file():
    cfg = TransportConfig()
    assert cfg.receive.max_message_size == 36 * 1024 * 1024 and cfg.accepted_domain("contoso.com")


def test_mailbox_under_a_wildcard_accepted_domain(tmp_path):
    cfg = load_config(write(tmp_path, """\
        accepted_domains:
          - domain: "*.contoso.com"
        mailboxes:
          - address: alice@sales.contoso.com
        """))
    assert cfg.accepted_domain("sales.contoso.com").domain == "*.contoso.com"
    assert cfg.mailbox("alice@sales.contoso.com") is not None


@pytest.mark.parametrize("cores, hub_receives, workers, serves", [
    (2, True, 1, True), (8, True, 7, True), (1, True, 0, True), (2, False, 2, False), (1, False, 1, False)])
def test_by_default_there_is_one_receive_process_per_core(monkeypatch, cores, hub_receives, workers, serves):
    """`workers` absent: the hub's process is one of the receive processes unless hub_receives is off."""
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    config = TransportConfig(hub_receives=hub_receives)
    assert (config.receive_workers, config.hub_serves_sessions) == (workers, serves)
    assert TransportConfig(workers=3).receive_workers == 3
