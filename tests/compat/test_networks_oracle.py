"""/etc/networks names in only_from / no_access: the real xinetd 2.3.15.3 and pyxinetd.

The same services run on both daemons: internal `echo`s whose lists name networks of
this machine's /etc/networks (`loopback 127.0.0.0`, `default 0.0.0.0`). A client
connects from several loopback sources (127/8 is all local) and records, for each
service, who got the echo back. xinetd runs in private namespaces (tests/oracle.py)
and its clients through `nsenter`; pyxinetd listens on free ports of the host loopback.

What xinetd does (recorded here, so a change of the oracle shows):
- `loopback` matches only the address 127.0.0.0 (its dump prints mask 255.255.255.255):
  glibc hands out the network number padded to four octets (0x7f000000), which
  xinetd's net_addr (addr.c) takes as a host number. The manual promises the network;
  pyxinetd matches 127.0.0.0/8 (docs/compatibility.md).
- `default` (network 0.0.0.0) is dropped with `failed to parse default`: net_addr
  refuses the network number 0, and the name is no host name either. `no_access =
  default` refuses nobody, `only_from = default` (left empty) everybody. The manual's
  network name is the network, and 0.0.0.0 is every IPv4 address: pyxinetd matches
  every IPv4 client and says so with a warning naming file:line.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import DaemonFactory, free_port, namespace_problem
from tests.oracle import require_xinetd, run_xinetd_dump

pytestmark = pytest.mark.skipif(namespace_problem("ip", "mount") is not None,
                                reason=str(namespace_problem("ip", "mount")))

SOURCES = ("127.0.0.1", "127.0.0.2", "127.0.0.0")

# (service id, list attribute line)
SERVICES = (
    ("only-loopback", "only_from = loopback"),
    ("deny-loopback", "no_access = loopback"),
    ("deny-default", "no_access = default"),
    ("only-default", "only_from = default"),
)

# Argument: a JSON object {service id: port}. Prints {service id: [sources served]}.
_CLIENT = r"""
import json, socket, sys
ports = json.loads(sys.argv[1])
sources = sys.argv[2:]
served = {}
for sid, port in ports.items():
    served[sid] = []
    for source in sources:
        s = socket.socket()
        s.settimeout(10)
        got = b""
        try:
            s.bind((source, 0))
            s.connect(("127.0.0.1", port))
            s.sendall(b"hi\n")
            while len(got) < 3:
                chunk = s.recv(16)
                if not chunk:
                    break
                got += chunk
        except OSError:
            pass
        finally:
            s.close()
        if got == b"hi\n":
            served[sid].append(source)
print(json.dumps(served))
"""


def _networks_present() -> str | None:
    try:
        text = Path("/etc/networks").read_text()
    except OSError as exc:
        return f"/etc/networks: {exc}"
    rows = {tuple(line.split()[:2]) for line in text.splitlines() if line.split()}
    for row in (("loopback", "127.0.0.0"), ("default", "0.0.0.0")):
        if row not in rows:
            return f"/etc/networks has no line {' '.join(row)!r}"
    return None


def _conf(ports: dict[str, int]) -> str:
    blocks = [f"service echo\n{{\n    id = {sid}\n    type = INTERNAL UNLISTED\n"
              f"    port = {ports[sid]}\n    socket_type = stream\n    protocol = tcp\n"
              f"    wait = no\n    {line}\n}}\n" for sid, line in SERVICES]
    return "defaults\n{\n}\n" + "".join(blocks)


def _default_lines() -> list[int]:
    """The line numbers of the `... = default` lines in _conf()."""
    text = _conf({sid: 1 for sid, _ in SERVICES})
    return [n for n, line in enumerate(text.splitlines(), 1) if line.endswith("= default")]


def _clients(prefix: list[str], ports: dict[str, int]) -> dict[str, list[str]]:
    done = subprocess.run([*prefix, sys.executable, "-c", _CLIENT, json.dumps(ports),
                           *SOURCES], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, list[str]] = json.loads(done.stdout)
    return result


def _run_xinetd(folder: Path, before: str | None = None
                ) -> tuple[str, str, dict[str, list[str]]]:
    """(dump, program log, sources served per service) of one xinetd run."""
    require_xinetd()
    ports = {sid: 7001 + n for n, (sid, _) in enumerate(SERVICES)}
    conf = folder / "xinetd.conf"
    conf.write_text(_conf(ports))
    served: dict[str, list[str]] = {}

    def connect(pid: int) -> None:
        served.update(_clients(["nsenter", "-t", str(pid), "-n", "--"], ports))

    run = run_xinetd_dump(conf, after_start=connect, before=before)
    assert run.started and run.dump, run.log + run.harness_error + run.before_stderr
    return run.dump, run.log, served


@pytest.fixture(scope="module")
def xinetd_run(tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[str, str, dict[str, list[str]]]:
    missing = _networks_present()
    if missing:
        pytest.skip(missing)
    return _run_xinetd(tmp_path_factory.mktemp("networks"))


def test_xinetd_matches_only_the_network_address_of_a_network_name(
        xinetd_run: tuple[str, str, dict[str, list[str]]]) -> None:
    dump, _, served = xinetd_run
    assert "Only from:  127.0.0.0/255.255.255.255(NET)\n" in dump
    assert "No access:  127.0.0.0/255.255.255.255(NET)\n" in dump
    # 127.0.0.1 and 127.0.0.2 are in the loopback network, yet only 127.0.0.0 matches.
    assert served["only-loopback"] == ["127.0.0.0"]
    assert served["deny-loopback"] == ["127.0.0.1", "127.0.0.2"]


def test_xinetd_drops_the_name_of_network_zero(
        xinetd_run: tuple[str, str, dict[str, list[str]]]) -> None:
    _, log, served = xinetd_run
    lines = [line.split(": ", 1)[1] for line in log.splitlines() if "default" in line]
    assert [re.sub(r"\[file=[^]]*\]", "[file=F]", line) for line in lines] == [
        f"ERROR: failed to parse default [file=F] [line={n}]" for n in _default_lines()]
    assert served["deny-default"] == list(SOURCES)
    assert served["only-default"] == []


def test_xinetd_takes_a_short_network_number_the_same_way(tmp_path: Path) -> None:
    # `loopback 127` (BSD style) in a networks file bound over /etc/networks inside
    # xinetd's own mount namespace: still a host entry, glibc pads the number.
    before = ("printf 'loopback 127\\n' > /tmp/networks && "
              "mount --bind /tmp/networks /etc/networks")
    dump, _, served = _run_xinetd(tmp_path, before)
    assert "Only from:  127.0.0.0/255.255.255.255(NET)\n" in dump
    assert served["only-loopback"] == ["127.0.0.0"]


def test_pyxinetd_matches_the_whole_network_of_a_network_name(daemons: DaemonFactory) -> None:
    missing = _networks_present()
    if missing:
        pytest.skip(missing)
    ports = {sid: free_port() for sid, _ in SERVICES}
    daemon = daemons.start_config(_conf(ports))
    served = _clients([], ports)
    log = daemon.log()
    assert served["only-loopback"] == list(SOURCES)
    assert served["deny-loopback"] == []
    assert "loopback" not in log


def test_pyxinetd_takes_default_as_every_ipv4_address_with_a_warning(
        daemons: DaemonFactory) -> None:
    missing = _networks_present()
    if missing:
        pytest.skip(missing)
    ports = {sid: free_port() for sid, _ in SERVICES}
    daemon = daemons.start_config(_conf(ports))
    served = _clients([], ports)
    assert served["deny-default"] == []
    assert served["only-default"] == list(SOURCES)
    warnings = [line.split(": ", 1)[1] for line in daemon.log().splitlines()
                if "network 0.0.0.0" in line]
    assert [re.sub(r"\[file=[^]]*\]", "[file=F]", line) for line in warnings] == [
        "WARNING: service echo: default is the /etc/networks name of network 0.0.0.0: it "
        "matches every IPv4 client, as 0.0.0.0 does (xinetd 2.3.15.3 ignores it: failed "
        f"to parse default) [file=F] [line={n}]" for n in _default_lines()]
