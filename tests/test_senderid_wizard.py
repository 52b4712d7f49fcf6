"""`transport senderid lookup` and `transport senderid wizard`: the linter's problem kinds, the wizard's proposals
proven through the engine (and re-checked here through `senderid test`), flattening, refusals, and the prompts on a
pseudo-terminal. DNS answers come from zone files the tests write, and once from a real UDP server."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import subprocess
from pathlib import Path

import pytest

from agents.senderid.lint import ProblemKind
from dnsserver import LocalDnsServer
from hubtools import REPO, TRANSPORT_BIN, subprocess_env
from transport.cli import main

LONG = " ".join(f"ip4:198.51.100.{i}" for i in range(1, 16))  # 15 terms, about 270 characters with the rest
BIG_TXT = "x" * 250

# One zone, one domain per problem kind (and a clean one). `$ORIGIN .` makes it authoritative for every name.
LINT_ZONE = f"""$ORIGIN .
$TTL 300
clean.example.      IN TXT "v=spf1 ip4:192.0.2.1 -all"
norecord.example.   IN TXT "site-verification=abc"
syntax.example.     IN TXT "v=spf1 ip4:192.0.2.300 -all"
dup.example.        IN TXT "v=spf1 -all"
dup.example.        IN TXT "v=spf1 ~all"
ptr.example.        IN TXT "v=spf1 ptr -all"
long.example.       IN TXT "v=spf1 {LONG[:200]}" "{LONG[200:]} -all"
big.example.        IN TXT "v=spf1 -all"
big.example.        IN TXT "a{BIG_TXT}"
big.example.        IN TXT "b{BIG_TXT}"
lookups.example.    IN TXT "v=spf1 {' '.join(f'a:h{i}.lookups.example' for i in range(11))} -all"
voids.example.      IN TXT "v=spf1 a:n1.voids.example a:n2.voids.example a:n3.voids.example -all"
missing.example.    IN TXT "v=spf1 include:gone.example -all"
host.example.       IN TXT "v=spf1 mx:mx:mail.host.example -all"
mx.example.         IN TXT "v=spf1 mx -all"
loop.example.       IN TXT "v=spf1 include:loop2.example -all"
loop2.example.      IN TXT "v=spf1 include:loop.example -all"
passall.example.    IN TXT "v=spf1 +all"
""" + "".join(f"h{i}.lookups.example. IN A 192.0.2.{i + 1}\n" for i in range(11)) + "".join(
    f"mx.example. IN MX 10 m{i}.mx.example.\nm{i}.mx.example. IN A 192.0.2.{i + 1}\n" for i in range(11))

KIND_DOMAINS = {
    ProblemKind.NO_RECORD: "norecord.example",
    ProblemKind.SYNTAX: "syntax.example",
    ProblemKind.DUPLICATE: "dup.example",
    ProblemKind.PTR: "ptr.example",
    ProblemKind.LONG_STRING: "long.example",
    ProblemKind.OVER_512: "big.example",
    ProblemKind.TOO_MANY_LOOKUPS: "lookups.example",
    ProblemKind.TOO_MANY_VOIDS: "voids.example",
    ProblemKind.MISSING_TARGET: "missing.example",
    ProblemKind.NOT_A_HOST_NAME: "host.example",
    ProblemKind.VOID_LOOKUP: "voids.example",
    ProblemKind.TOO_MANY_MX: "mx.example",
    ProblemKind.LOOP: "loop.example",
    ProblemKind.PASS_ALL: "passall.example",
}

# A domain to write records for: its MX host and two more servers send; a provider sends for it too.
WIZARD_ZONE = """$ORIGIN .
$TTL 300
shop.example.             IN TXT "v=spf1 a mx ptr mx:mx:art.shop.example ~all"
shop.example.             IN TXT "site-verification=keep-me"
shop.example.             IN MX  10 mail.shop.example.
shop.example.             IN A   192.0.2.80
mail.shop.example.        IN A   192.0.2.25
art.shop.example.         IN A   192.0.2.26
_spf.prov.example.        IN TXT "v=spf1 ip4:198.51.100.0/28 -all"
"""


def provider(name: str, parts: int, first: int) -> str:
    """A provider whose record costs 1 + ``parts`` lookups, as the big ones do: includes of one ip4 network each."""
    terms = " ".join(f"include:_n{i}.{name}" for i in range(parts))
    return (f'{name}. IN TXT "v=spf1 {terms} -all"\n'
            + "".join(f'_n{i}.{name}. IN TXT "v=spf1 ip4:203.0.113.{first + i} -all"\n' for i in range(parts)))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "offline.yaml"
    path.write_text("dns:\n  use_network: false\n")
    return path


def zone(tmp_path: Path, text: str, name: str = "test.zone") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def lookup(capsys, config: Path, zone_file: Path, domain: str) -> dict:
    code, out, err = run(capsys, "senderid", "lookup", domain, "--zone", zone_file, "-c", config, "--json")
    assert code == 0, err
    return json.loads(out)


def wizard(capsys, config: Path, zone_file: Path, domain: str, *flags: str) -> dict:
    code, out, err = run(capsys, "senderid", "wizard", domain, *flags, "--zone", zone_file, "-c", config, "--json")
    assert code == 0, err
    return json.loads(out)


def engine(capsys, config: Path, zone_text: str, tmp_path: Path, domain: str, ip: str, scope: str = "spf") -> str:
    """`senderid test` against ``zone_text``: the result another receiver would get once it is published."""
    published = zone(tmp_path, zone_text, "published.zone")
    code, out, err = run(capsys, "senderid", "test", "--ip", ip, "--domain", domain, "--scope", scope,
                         "--zone", published, "-c", config, "--json")
    assert code == 0, err
    return json.loads(out)["result"]


def publish(zone_text: str, domain: str, records: list[str]) -> str:
    """The zone with ``domain``'s SPF and Sender ID TXT lines replaced by ``records``."""
    kept = [line for line in zone_text.splitlines()
            if not re.match(rf"{re.escape(domain)}\.\s+IN TXT \"(v=spf1|spf2\.0)", line)]
    return "\n".join(kept + [f'{domain}. IN TXT "{r}"' for r in records]) + "\n"


# -- lookup ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KIND_DOMAINS), ids=lambda k: k.name)
def test_lookup_finds_each_kind_of_problem(tmp_path, config, capsys, kind):
    data = lookup(capsys, config, zone(tmp_path, LINT_ZONE), KIND_DOMAINS[kind])
    kinds = {p["kind"] for p in data["problems"]}
    assert kind.value in kinds, data["problems"]
    found = next(p for p in data["problems"] if p["kind"] == kind.value)
    assert found["where"].split(" ")[0].endswith(".example") and found["severity"] == kind.severity.value


def test_every_problem_kind_is_covered_here_or_over_the_network():
    assert set(KIND_DOMAINS) | {ProblemKind.DNS_ERROR} == set(ProblemKind)


def test_a_clean_record_has_no_problem_and_its_counts(tmp_path, config, capsys):
    data = lookup(capsys, config, zone(tmp_path, LINT_ZONE), "clean.example")
    assert data["problems"] == []
    (record,) = data["records"]
    assert (record["lookups"], record["void_lookups"]) == (0, 0) and record["terms"][0]["networks"] == ["192.0.2.1/32"]


def test_counts_against_the_limits(tmp_path, config, capsys):
    z = zone(tmp_path, LINT_ZONE)
    assert lookup(capsys, config, z, "lookups.example")["records"][0]["lookups"] == 11
    voids = lookup(capsys, config, z, "voids.example")
    assert voids["records"][0]["void_lookups"] == 3 and voids["limits"] == {"lookups": 10, "void_lookups": 2}
    long = lookup(capsys, config, z, "long.example")["records"][0]
    assert len(long["strings"]) == 2 and len(long["text"]) > 255
    assert "ip4:198.51.100.15" in long["text"] and long["valid"]


def test_includes_and_redirects_are_expanded_with_their_addresses(tmp_path, config, capsys):
    text = """$ORIGIN .
tree.example.       300 IN TXT "v=spf1 mx include:_spf.prov.example redirect=base.example"
tree.example.       300 IN MX  10 mx1.tree.example.
mx1.tree.example.   300 IN A   192.0.2.25
mx1.tree.example.   300 IN AAAA 2001:db8::25
_spf.prov.example.  300 IN TXT "v=spf1 ip4:198.51.100.0/24 a:out.prov.example/28 -all"
out.prov.example.   300 IN A   203.0.113.7
base.example.       300 IN TXT "v=spf1 ip4:203.0.113.200 -all"
"""
    data = lookup(capsys, config, zone(tmp_path, text), "tree.example")
    (record,) = data["records"]
    mx, include, redirect = record["terms"]
    assert mx["hosts"] == ["mx1.tree.example"] and mx["networks"] == ["192.0.2.25/32", "2001:db8::25/128"]
    inner = include["record"]
    assert inner["domain"] == "_spf.prov.example" and include["lookups"] == 2
    assert [t["networks"] for t in inner["terms"][:2]] == [["198.51.100.0/24"], ["203.0.113.0/28"]]
    assert redirect["term"] == "redirect=base.example" and redirect["record"]["terms"][0]["networks"] == [
        "203.0.113.200/32"]
    assert record["lookups"] == 4 and data["problems"] == []
    code, out, _ = run(capsys, "senderid", "lookup", "tree.example", "--zone", zone(tmp_path, text), "-c", config)
    assert code == 0 and "DNS lookups: 4 of 10; void lookups: 1 of 2" in out  # a:out… has no AAAA: void for IPv6
    assert "mx1.tree.example: 192.0.2.25, 2001:db8::25" in out and "Problems: none" in out


async def test_lookup_over_real_dns_reports_a_dns_error(tmp_path):
    records = {"net.example": {"TXT": ['"v=spf1 include:_spf.ok.example include:_spf.broken.example -all"']},
               "_spf.ok.example": {"TXT": ['"v=spf1 ip4:192.0.2.9 -all"']}}
    async with LocalDnsServer(records, failures={"_spf.broken.example": "servfail"}) as server:
        cfg = tmp_path / "net.yaml"
        cfg.write_text(f"dns:\n  nameservers: [127.0.0.1]\n  port: {server.port}\n  timeout: 2\n  use_network: true\n")
        proc = await asyncio.create_subprocess_exec(
            str(TRANSPORT_BIN), "senderid", "lookup", "net.example", "--json", "-c", str(cfg), cwd=str(REPO),
            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await proc.communicate()
    assert proc.returncode == 0, err
    data = json.loads(out)
    ok, broken = data["records"][0]["terms"][:2]
    assert ok["record"]["terms"][0]["networks"] == ["192.0.2.9/32"]
    assert broken["note"] == "DNS error"
    assert [p["kind"] for p in data["problems"]] == [ProblemKind.DNS_ERROR.value]
    assert ("_spf.broken.example", "TXT") in server.queries


def test_the_demo_domain_needs_the_wizard_and_the_wizard_fixes_it(capsys):
    demo = REPO / "transport.yaml"
    code, out, err = run(capsys, "senderid", "lookup", "tailspintoys.com", "--json", "-c", demo)
    assert code == 0, err
    kinds = {p["kind"] for p in json.loads(out)["problems"] if p["severity"] == "error"}
    assert kinds == {ProblemKind.NOT_A_HOST_NAME.value, ProblemKind.TOO_MANY_VOIDS.value}
    code, out, _ = run(capsys, "senderid", "test", "--ip", "198.51.100.7", "--domain", "tailspintoys.com", "--json",
                       "-c", demo)
    assert json.loads(out)["result"] == "permerror"  # what the lint warned of
    code, out, err = run(capsys, "senderid", "wizard", "tailspintoys.com", "--outbound-host", "mail.tailspintoys.com",
                         "--outbound-host", "artwork.tailspintoys.com", "--outbound-host",
                         "exclientserver.tailspintoys.com", "--all", "fail", "--json", "-c", demo)
    assert code == 0, err
    data = json.loads(out)
    assert data["record"] == "v=spf1 mx a:artwork.tailspintoys.com a:exclientserver.tailspintoys.com -all"
    assert data["replaces"] == [data["survey"]["current"]["records"][0]["text"]]


# -- wizard -----------------------------------------------------------------------------------------------------


def test_wizard_flags_propose_records_that_pass_declared_senders_and_fail_others(tmp_path, config, capsys):
    z = zone(tmp_path, WIZARD_ZONE)
    data = wizard(capsys, config, z, "shop.example", "--outbound-host", "mail.shop.example", "--outbound-host",
                  "art.shop.example", "--outbound-ip", "192.0.2.99", "--include", "_spf.prov.example",
                  "--all", "fail", "--pra")
    assert data["record"] == "v=spf1 ip4:192.0.2.99 mx a:art.shop.example include:_spf.prov.example -all"
    assert data["pra_record"] == "spf2.0/pra " + data["record"].removeprefix("v=spf1 ")
    assert data["lookups"] == 3 and data["lint"]["problems"] == []
    assert all(c["result"] == c["expected"] for c in data["checks"])
    assert {c["ip"] for c in data["checks"] if c["expected"] == "fail"} >= {"192.0.2.80"}  # the web server
    assert data["bind"][-2:] == [f'shop.example. 3600 IN TXT "{data["record"]}"',
                                 f'shop.example. 3600 IN TXT "{data["pra_record"]}"']
    assert data["dnscmd"][0].startswith('dnscmd /recorddelete shop.example @ TXT "v=spf1 a mx ptr')
    assert data["dnscmd"][-2] == f'dnscmd /recordadd shop.example @ TXT "{data["record"]}"'
    # Published, the records do what was asked for any receiver running the engine.
    published = publish(WIZARD_ZONE, "shop.example", [data["record"], data["pra_record"]])
    for ip in ("192.0.2.25", "192.0.2.26", "192.0.2.99", "198.51.100.3"):
        assert engine(capsys, config, published, tmp_path, "shop.example", ip) == "pass", ip
        assert engine(capsys, config, published, tmp_path, "shop.example", ip, "pra") == "pass", ip
    for ip in ("192.0.2.80", "198.51.100.16", "2001:db8::1"):
        assert engine(capsys, config, published, tmp_path, "shop.example", ip) == "fail", ip


def test_wizard_flattens_hosts_whose_lookups_would_be_void_for_ipv6(tmp_path, config, capsys):
    text = WIZARD_ZONE + "".join(f"h{i}.shop.example. IN A 192.0.2.{40 + i}\n" for i in range(3))
    hosts = [flag for i in range(3) for flag in ("--outbound-host", f"h{i}.shop.example")]
    data = wizard(capsys, config, zone(tmp_path, text), "shop.example", *hosts, "--all", "fail")
    assert data["record"] == "v=spf1 ip4:192.0.2.40 a:h1.shop.example a:h2.shop.example -all"
    assert data["notes"] == ["a:h0.shop.example flattened to the 1 address(es) it designates today, because 3 of its "
                             "lookups were void for an IPv6 client and RFC 7208 allows 2; re-run the wizard when "
                             "h0.shop.example changes them"]
    assert data["lint"]["records"][0]["void_lookups"] == 2


def test_wizard_softfails_by_default_and_no_mail_fails_everything(tmp_path, config, capsys):
    z = zone(tmp_path, WIZARD_ZONE)
    data = wizard(capsys, config, z, "shop.example", "--outbound-host", "mail.shop.example")
    assert data["record"] == "v=spf1 mx ~all"
    assert {c["result"] for c in data["checks"] if c["expected"] != "pass"} == {"softfail"}
    data = wizard(capsys, config, z, "shop.example", "--no-mail")
    assert data["record"] == "v=spf1 -all" and data["pra_record"] is None
    assert all(c["expected"] == "fail" and c["result"] == "fail" for c in data["checks"]) and data["checks"]


def test_wizard_flattens_to_stay_within_ten_lookups(tmp_path, config, capsys):
    text = WIZARD_ZONE + provider("p1.example", 4, 1) + provider("p2.example", 5, 101)
    z = zone(tmp_path, text)
    data = wizard(capsys, config, z, "shop.example", "--outbound-host", "art.shop.example",
                  "--include", "p1.example", "--include", "p2.example", "--all", "fail")
    # 1 (a:art) + 5 (p1) + 6 (p2) = 12: the domain's own host goes first, then the costliest include.
    assert data["record"] == ("v=spf1 ip4:192.0.2.26 ip4:203.0.113.101 ip4:203.0.113.102/31 ip4:203.0.113.104/31 "
                              "include:p1.example -all")  # adjacent addresses merged: exactly the same ones
    assert data["lookups"] == 5
    assert len(data["notes"]) == 2 and all("flattened" in n and "12 DNS lookups" in n for n in data["notes"])
    published = publish(text, "shop.example", [data["record"]])
    for ip in ("192.0.2.26", "203.0.113.1", "203.0.113.4", "203.0.113.105"):
        assert engine(capsys, config, published, tmp_path, "shop.example", ip) == "pass", ip
    assert engine(capsys, config, published, tmp_path, "shop.example", "203.0.113.106") == "fail"
    code, out, err = run(capsys, "senderid", "wizard", "shop.example", "--outbound-host", "art.shop.example",
                         "--include", "p1.example", "--include", "p2.example", "--zone", z, "-c", config)
    assert code == 0, err
    assert "note: a:art.shop.example flattened" in out and "Proposed record (5 DNS lookup(s) of 10" in out


@pytest.mark.parametrize("flags, extra, sentence", [
    (["--include", "gone.example"], "", "include:gone.example: gone.example does not exist"),
    (["--include", "p1.example", "--include", "p2.example"],
     'p1.example. IN TXT "v=spf1 exists:%{i}.a.p1.example exists:%{i}.b.p1.example exists:%{i}.c.p1.example '
     'exists:%{i}.d.p1.example exists:%{i}.e.p1.example -all"\n'
     'p2.example. IN TXT "v=spf1 ptr:p2.example a:x1.p2.example a:x2.p2.example a:x3.p2.example a:x4.p2.example '
     'a:x5.p2.example -all"\n',
     "the record would need 13 DNS lookups (11 void) even with every term that can be flattened flattened"),
    (["--outbound-host", "nowhere.shop.example"], "", "nowhere.shop.example has no A or AAAA record"),
    (["--no-mail", "--outbound-ip", "192.0.2.1"], "", "--no-mail says shop.example sends no mail"),
    (["--outbound-ip", "192.0.2.500"], "", "--outbound-ip '192.0.2.500' is not an IP address or network"),
    (["--include", "bad.example"], 'bad.example. IN TXT "v=spf1 +all"\n', "lets every host on the internet send"),
])
def test_wizard_refuses_a_record_it_cannot_make_valid(tmp_path, config, capsys, flags, extra, sentence):
    code, out, err = run(capsys, "senderid", "wizard", "shop.example", *flags,
                         "--zone", zone(tmp_path, WIZARD_ZONE + extra), "-c", config)
    assert code == 1 and out == ""
    assert err.startswith("transport senderid: ") and sentence in err and len(err.strip().splitlines()) == 1, err


def test_wizard_without_answers_off_a_terminal_says_what_to_give(tmp_path, config):
    result = subprocess.run([str(TRANSPORT_BIN), "senderid", "wizard", "shop.example", "--zone",
                             str(zone(tmp_path, WIZARD_ZONE)), "-c", str(config)], capture_output=True, text=True,
                            cwd=str(REPO), env=subprocess_env(), stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 1 and "say which servers send mail for shop.example" in result.stderr


# -- the prompts, on a pseudo-terminal --------------------------------------------------------------------------


class Terminal:
    """The command on a pseudo-terminal: `expect` reads until a prompt shows, `answer` types a line."""

    def __init__(self, args: list[str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=str(REPO),
                                     env=subprocess_env(), close_fds=True)
        os.close(slave)
        self.seen = ""
        self.pos = 0  # where the last expected text ended: each prompt is matched once, in order

    def read(self) -> bool:
        ready, _, _ = select.select([self.master], [], [], 60)  # a guard against a hang, not a measurement
        assert ready, f"the command stopped talking; so far:\n{self.seen}"
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # EIO: the command has exited and closed the terminal
            return False
        self.seen += chunk.decode()
        return bool(chunk)

    def expect(self, text: str) -> None:
        while (at := self.seen.find(text, self.pos)) < 0:
            assert self.read(), f"{text!r} never appeared in:\n{self.seen}"
        self.pos = at + len(text)

    def answer(self, text: str) -> None:
        os.write(self.master, text.encode() + b"\n")

    def finish(self) -> str:
        while self.read():
            pass
        assert self.proc.wait() == 0, self.seen
        os.close(self.master)
        return self.seen


def test_interactive_wizard_gives_the_same_record_as_the_flags(tmp_path, config, capsys):
    z = zone(tmp_path, WIZARD_ZONE)
    term = Terminal([str(TRANSPORT_BIN), "senderid", "wizard", "shop.example", "--zone", str(z), "-c", str(config)])
    term.expect("Survey of shop.example:")
    for prompt, reply in [("Does shop.example send mail at all? [Y/n]", ""),
                          ("Does the mail server mail.shop.example (192.0.2.25) send mail for shop.example? [Y/n]", "y"),
                          ("Does shop.example itself (192.0.2.80) send mail? [y/N]", "maybe"),
                          ("Does shop.example itself (192.0.2.80) send mail? [y/N]", "n"),
                          ("Other servers that send mail for it", "192.0.2.99, art.shop.example"),
                          ("Providers that send for it", "_spf.prov.example"),
                          ("Fail mail from every other server (-all)?", "y"),
                          ("Publish a Sender ID record (spf2.0/pra) too? [y/N]", "yes")]:
        term.expect(prompt)
        term.answer(reply)
    out = term.finish()
    shown = re.findall(r"^  ((?:v=spf1|spf2\.0/pra) .*?)\r?$", out, re.M)
    flags = ["--outbound-ip", "192.0.2.99", "--outbound-host", "mail.shop.example", "--outbound-host",
             "art.shop.example", "--include", "_spf.prov.example", "--all", "fail", "--pra"]
    data = wizard(capsys, config, z, "shop.example", *flags)
    assert shown == [data["record"], data["pra_record"]]
    same = re.search(r"The same answers as flags: transport senderid wizard shop\.example (.*?)\r?$", out, re.M)
    assert same is not None and same.group(1).split() == flags
