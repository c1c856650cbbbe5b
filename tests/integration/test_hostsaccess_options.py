"""hosts.allow/hosts.deny options as the real daemon applies them, where xinetd 2.3.15.3
with Debian's libwrap was seen to apply them so (tests/compat/test_wrap_options_oracle.py
runs such rules against both daemons side by side).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyxinetd.access.hostspatterns import Endpoint, Lookups, Request, client_match
from pyxinetd.access.resolver import resolve
from tests.daemon import Daemon, DaemonFactory, free_port, wait_until, without_ids_ignored

TIMEOUT = 10.0
PROBE = """#!/bin/sh
[ -n "$PROBE_OUT" ] && exec >"$PROBE_OUT"
echo "nice=$(nice) umask=$(umask)"
env | LC_ALL=C sort
"""


def service(name: str, port: int, server: Path, extra: str = "") -> str:
    user = "" if "user =" in extra else "\tuser = root\n"
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
            f"\twait = no\n{user}\tserver = {server}\n\tbind = 127.0.0.1\n"
            f"\tport = {port}\n{extra}}}\n")


def fetch(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        chunks = []
        while data := conn.recv(65536):
            chunks.append(data)
    return b"".join(chunks).decode()


def start(daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          allow: str, deny: str = "", extra: str = "") -> tuple[Daemon, int]:
    """One service, `in.probe` (its daemon name), with the given tables."""
    probe = tmp_path / "in.probe"
    probe.write_text(PROBE)
    probe.chmod(0o755)
    (tmp_path / "hosts.allow").write_text(allow)
    (tmp_path / "hosts.deny").write_text(deny)
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    port = free_port()
    return daemons.start_config(service("probe", port, probe, extra)), port


def spawned(path: Path) -> str:
    return str(wait_until(lambda: path.exists() and path.read_text().endswith("\n")
                          and path.read_text(), TIMEOUT, what=f"{path.name} written"))


def test_nice_option_adds_to_the_services_nice(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = os.nice(0)
    _, port = start(daemons, tmp_path, monkeypatch, "in.probe: ALL: nice 5: umask 027\n",
                    extra="\tnice = 2\n\tumask = 077\n")
    first = fetch(port).splitlines()[0]
    assert first == f"nice={min(own + 7, 19)} umask=0027"


def test_spawn_and_aclexec_run_at_the_services_nice_plus_the_options_before_them(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # xinetd's child applies the service's nice before libwrap runs the commands; each
    # `nice` option adds to it for the commands after it.
    own = os.nice(0)
    _, port = start(daemons, tmp_path, monkeypatch,
                    f"in.probe: ALL: spawn nice > {tmp_path}/out1: nice 2: nice 1:"
                    f" spawn nice > {tmp_path}/out2: aclexec nice > {tmp_path}/out3\n",
                    extra="\tnice = 3\n")
    fetch(port)
    assert [spawned(tmp_path / name) for name in ("out1", "out2", "out3")] == [
        f"{min(own + 3, 19)}\n", f"{min(own + 6, 19)}\n", f"{min(own + 6, 19)}\n"]


def test_twist_runs_with_the_daemons_environment(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYX_OUTER_MARK", "outer")
    daemon, port = start(daemons, tmp_path, monkeypatch,
                         "in.probe: ALL: setenv FOO bar baz: twist env\n",
                         extra="\tenv = SVC=1\n")
    lines = fetch(port).splitlines()
    assert "PYX_OUTER_MARK=outer" in lines
    assert "FOO=bar baz" in lines
    assert "SVC=1" not in lines
    # libwrap's own line about it (syslog there).
    daemon.wait_for_log(r"INFO: twist 127.0.0.1 to env\n")


def test_twist_gets_no_remote_host_or_peer_variables(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # xinetd adds REMOTE_HOST only when it execs a server; the twist command keeps the
    # daemon's own value, if it has one, and gets nothing of the connection.
    monkeypatch.setenv("REMOTE_HOST", "daemons-own")
    _, port = start(daemons, tmp_path, monkeypatch, "in.probe: ALL: twist env\n",
                    extra="\tflags = PEERENV\n")
    lines = fetch(port).splitlines()
    assert [line for line in lines if line.startswith("REMOTE_")] == [
        "REMOTE_HOST=daemons-own"]
    assert not [line for line in lines if line.startswith(("TCP", "PROTO="))]


def test_setenv_reaches_an_ordinary_server(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # xinetd drops it (it execs the server with the service's environment); pyxinetd
    # does what hosts_options(5) says (docs/compatibility.md).
    _, port = start(daemons, tmp_path, monkeypatch, "in.probe: ALL: setenv FOO bar\n",
                    extra="\tenv = SVC=1\n")
    lines = fetch(port).splitlines()
    assert "FOO=bar" in lines and "SVC=1" in lines


def expected_name(address: str) -> str:
    info = resolve(address)
    if info.name is None:
        return "unknown"
    return info.name if info.confirmed else "paranoid"


def test_host_info_shows_a_name_only_once_looked_up(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    name = expected_name("127.0.0.1")
    host = name if name not in ("unknown", "paranoid") else "127.0.0.1"
    _, port = start(daemons, tmp_path, monkeypatch,
                    f"in.probe: ALL: spawn echo %h %c %s %n %h %c %s %N %s > {out}\n")
    fetch(port)
    assert spawned(out).split() == [
        "127.0.0.1", "127.0.0.1", "in.probe@127.0.0.1", name, host, host,
        "in.probe@127.0.0.1", name, f"in.probe@{host}"]


def test_a_name_pattern_reached_before_looks_the_name_up(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    name = expected_name("127.0.0.1")
    host = name if name not in ("unknown", "paranoid") else "127.0.0.1"
    # Line 1 is not reached for a name (its daemon does not match): no lookup; line 2
    # compares the client's name with a pattern: looked up from then on.
    _, port = start(daemons, tmp_path, monkeypatch,
                    "other: nosuch.invalid\nin.probe: nosuch.invalid: deny\n"
                    f"in.probe: ALL: spawn echo %h %c > {out}\n")
    fetch(port)
    assert spawned(out).split() == [host, host]


def test_other_names_wait_for_their_lookup(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    # The name is needed (a name pattern in another rule) but never reached here.
    _, port = start(daemons, tmp_path, monkeypatch,
                    "other: .invalid\n"
                    f"in.probe: ALL: spawn echo %h %c > {out}\n")
    fetch(port)
    assert spawned(out).split() == ["127.0.0.1", "127.0.0.1"]


def test_critical_refusal_names_xinetds_function(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    daemon, port = start(daemons, tmp_path, monkeypatch, "",
                         "in.probe: ALL: severity crit\n")
    assert fetch(port) == ""
    daemon.wait_for_log(rf"CRITICAL: {daemon.pid} {{access_control}} libwrap refused "
                        r"connection to probe \(libwrap=in.probe\) from 127.0.0.1")


def test_spawn_helper_is_no_unknown_child_at_exit(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    daemon, port = start(daemons, tmp_path, monkeypatch,
                         f"in.probe: ALL: spawn echo spawned > {out}\n")
    fetch(port)
    assert spawned(out) == "spawned\n"
    daemon.signal(signal.SIGTERM)
    daemon.wait_exit(TIMEOUT)
    assert not re.search(r"unknown child process", daemon.log()), daemon.log()


def test_banner_newlines_become_crlf_even_after_a_cr(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "banners"
    folder.mkdir()
    (folder / "in.probe").write_bytes(b"dos %d\r\nunix\nlast")
    _, port = start(daemons, tmp_path, monkeypatch,
                    f"in.probe: ALL: banners {folder}: twist echo served\n")
    assert fetch(port) == "dos in.probe\r\r\nunix\r\nlastserved\n"


def test_a_banner_is_expanded_where_its_option_stands(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # libwrap sends the banner while it processes the options: the `%n` after it has
    # not looked the name up yet, so the banner's `%h` is the address.
    folder = tmp_path / "banners"
    folder.mkdir()
    (folder / "in.probe").write_text("before %h\n")
    _, port = start(daemons, tmp_path, monkeypatch,
                    f"in.probe: ALL: banners {folder}: twist echo %n %h\n")
    name = expected_name("127.0.0.1")
    after = "127.0.0.1" if name in ("unknown", "paranoid") else name
    assert fetch(port) == f"before 127.0.0.1\r\n{name} {after}\n"


def test_a_banners_n_looks_the_name_up(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing in the tables needs the name, but the banner file asks for it.
    folder = tmp_path / "banners"
    folder.mkdir()
    (folder / "in.probe").write_text("name %n then %h\n")
    _, port = start(daemons, tmp_path, monkeypatch,
                    f"in.probe: ALL: banners {folder}: twist echo %h\n")
    name = expected_name("127.0.0.1")
    host = "127.0.0.1" if name in ("unknown", "paranoid") else name
    assert fetch(port) == f"name {name} then {host}\r\n{host}\n"


@pytest.mark.parametrize(("daemon_list", "client_list", "letter"), [
    # The client's name (looked up for the rule's pattern) matches the rule; its
    # banner asks for the server's name, which no rule reads.
    ("in.probe", "{name}", "%N"),
    # The server's name (for `daemon@host`) matches; the banner asks for the client's.
    ("in.probe@{name}", "ALL", "%n"),
])
def test_a_banner_of_a_rule_matched_by_a_name_gets_the_other_name(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        daemon_list: str, client_list: str, letter: str) -> None:
    # Before the names came, the rule could not be told to match: its banner's name
    # is looked up once they are in, the request served (not refused as reading a
    # name never asked for).
    name = expected_name("127.0.0.1")
    if name in ("unknown", "paranoid"):
        pytest.skip("127.0.0.1 has no name here")
    folder = tmp_path / "banners"
    folder.mkdir()
    (folder / "in.probe").write_text(f"name {letter}\n")
    daemon, port = start(daemons, tmp_path, monkeypatch,
                         f"{daemon_list.format(name=name)}: {client_list.format(name=name)}"
                         f": banners {folder}: twist echo served\n")
    assert fetch(port) == f"name {name}\r\nserved\n"
    assert "internal error" not in daemon.log()


def test_every_banners_option_sends_its_file_in_order(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "b1", tmp_path / "b2"
    for folder, text in ((first, "one %d\n"), (second, "two\n")):
        folder.mkdir()
        (folder / "in.probe").write_text(text)
    _, port = start(daemons, tmp_path, monkeypatch,
                    f"in.probe: ALL: banners {first}: banners {second}: banners={first}:"
                    f" twist echo served\n")
    assert fetch(port) == "one in.probe\r\ntwo\r\none in.probe\r\nserved\n"


def test_banners_before_an_option_error_are_sent(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "banners"
    folder.mkdir()
    (folder / "in.probe").write_text("before\n")
    daemon, port = start(daemons, tmp_path, monkeypatch,
                         f"in.probe: ALL: banners {folder}: nice x: banners {folder}\n")
    assert fetch(port) == "before\r\n"
    daemon.wait_for_log("libwrap refused connection to probe")


def test_the_rule_after_a_failed_aclexec_sends_its_banners_with_the_name(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The failing rule's banner went out before its aclexec ran; hosts.deny's rule then
    # applies like any matching rule: its %n waits for the name.
    first, second = tmp_path / "b1", tmp_path / "b2"
    first.mkdir()
    second.mkdir()
    (first / "in.probe").write_text("first %h\n")
    (second / "in.probe").write_text("second %n %h\n")
    _, port = start(daemons, tmp_path, monkeypatch,
                    f"in.probe: ALL: banners {first}: aclexec /bin/false\n",
                    f"in.probe: ALL: banners {second}: twist echo %h\n")
    name = expected_name("127.0.0.1")
    host = "127.0.0.1" if name in ("unknown", "paranoid") else name
    assert fetch(port) == f"first 127.0.0.1\r\nsecond {name} {host}\r\n{host}\n"


def test_a_percent_before_the_newline_takes_the_cr(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # libwrap ends the line with CRLF, then expands: `%` + CR is an unknown sequence.
    folder = tmp_path / "banners"
    folder.mkdir()
    (folder / "in.probe").write_text("100%\nnext %z.\n")
    daemon, port = start(daemons, tmp_path, monkeypatch,
                         f"in.probe: ALL: banners {folder}: spawn echo %y\n"
                         f"in.probe: ALL: twist echo served\n")
    assert fetch(port).startswith("100\nnext .\r\n")
    where = f"{tmp_path / 'hosts.allow'}, line 1"
    daemon.wait_for_log("unrecognized %y")
    log = without_ids_ignored(daemon.log_path.read_bytes().decode())     # the CR kept
    warnings = [line.split("WARNING: ", 1)[1] for line in log.split("\n")
                if "WARNING: " in line]
    assert warnings == [f"{where}: unrecognized %\r", f"{where}: unrecognized %z",
                        f"{where}: unrecognized %y"]


def test_banner_bytes_go_out_unchanged(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A latin-1 file, and the NUL an rlogin banner starts with, as libwrap sends them
    # (tests/compat/test_libwrap_banner_bytes.py compares more files with libwrap).
    folder = tmp_path / "banners"
    folder.mkdir()
    (folder / "in.probe").write_bytes(b"\0caf\xe9 %d\ncut\0here\n")
    _, port = start(daemons, tmp_path, monkeypatch,
                    f"in.probe: ALL: banners {folder}: twist echo served\n")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        received = b""
        while data := conn.recv(65536):
            received += data
    assert received == b"\0caf\xe9 in.probe\r\ncutserved\n"


def test_an_unreadable_banner_folder_is_warned_about(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # libwrap is silent about a missing file, not about a missing folder.
    folder = tmp_path / "banners"
    folder.mkdir()
    daemon, port = start(daemons, tmp_path, monkeypatch,
                         f"in.probe: ALL: banners {folder}: banners {tmp_path / 'none'}:"
                         f" twist echo served\n")
    assert fetch(port) == "served\n"
    daemon.wait_for_log(re.escape(f"WARNING: {tmp_path / 'hosts.allow'}, line 1: "
                                  f"{tmp_path / 'none'}: No such file or directory"))
    assert "banners: No such file" not in daemon.log()


def test_option_errors_name_the_files_path(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    daemon, port = start(daemons, tmp_path, monkeypatch,
                         "# a comment\nin.probe: ALL: bogus 1\n")
    assert fetch(port) == ""
    daemon.wait_for_log(re.escape(f'ERROR: {tmp_path / "hosts.allow"}, line 2: bad option '
                                  f'name: "bogus"'))


@pytest.mark.parametrize(("nsswitch", "member"), [
    ("passwd: files\nnetgroup:       nis\n", False),       # Debian's default
    ("netgroup: files [NOTFOUND=return] nis  # local first\n", True),
    ("passwd: files\n", True),                               # no netgroup line
    (None, True),                                            # no nsswitch.conf
])
def test_netgroups_come_from_the_file_only_when_nsswitch_says_files(
        tmp_path: Path, nsswitch: str | None, member: bool) -> None:
    (tmp_path / "netgroup").write_text("trusted (ws1,,) (ws2,-,)\n")
    if nsswitch is not None:
        (tmp_path / "nsswitch.conf").write_text(nsswitch)
    lookups = Lookups(netgroup_file=str(tmp_path / "netgroup"),
                      nsswitch_file=str(tmp_path / "nsswitch.conf"))
    request = Request("in.probe", Endpoint("10.0.0.5", name="ws1"))
    assert client_match("@trusted", request, lookups) is member


def builtin(name: str, kind: str, port: int, log: Path) -> str:
    return (f"service {name}\n{{\n\ttype = INTERNAL UNLISTED\n\tid = {name}-{kind}\n"
            f"\tsocket_type = {kind}\n\twait = {'yes' if kind == 'dgram' else 'no'}\n"
            f"\tbind = 127.0.0.1\n\tport = {port}\n\tlog_type = FILE {log}\n"
            f"\tlog_on_failure = HOST\n}}\n")


def test_twist_on_a_builtin_xinetd_serves_itself_is_an_error(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    allow = tmp_path / "hosts.allow"
    allow.write_text("daytime: ALL: twist echo twisted %d\necho: ALL: twist echo twisted %d\n")
    (tmp_path / "hosts.deny").write_text("")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(allow))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    log = tmp_path / "services.log"
    ports = {kind: free_port() for kind in ("stream", "dgram", "echo")}
    daemon = daemons.start_config(builtin("daytime", "stream", ports["stream"], log)
                                  + builtin("daytime", "dgram", ports["dgram"], log)
                                  + builtin("echo", "stream", ports["echo"], log))
    # A builtin xinetd forks for gets the twist; the others are refused.
    assert fetch(ports["echo"]) == "twisted echo\n"
    assert fetch(ports["stream"]) == ""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(b"x", ("127.0.0.1", ports["dgram"]))
        wait_until(lambda: "FAIL: daytime-dgram libwrap" in log.read_text(), TIMEOUT,
                   what="the datagram's FAIL line")
        with pytest.raises(BlockingIOError):
            client.recv(100, socket.MSG_DONTWAIT)
    assert "FAIL: daytime-stream libwrap from=127.0.0.1" in log.read_text()
    daemon.wait_for_log(re.escape(f"ERROR: {allow}, line 1: twist option in resident "
                                  "process"), count=2)


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder that a command running as `nobody` can write into."""
    folder = Path(tempfile.mkdtemp(prefix="pyxinetd-wrap-"))
    folder.chmod(0o1777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to nobody needs root")
def test_spawn_runs_as_the_services_user_with_the_options_before_it(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        open_folder: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    probe = tmp_path / "in.probe"
    _, port = start(daemons, tmp_path, monkeypatch,
                    f"in.probe: ALL: setenv XV one: umask 077: spawn (id -u; id -g; umask; "
                    f"echo $XV) > {open_folder}/part; mv {open_folder}/part {open_folder}/out1: "
                    f"setenv XV two: aclexec echo $XV > "
                    f"{open_folder}/out2\n", extra="\tuser = nobody\n\tumask = 027\n")
    tmp_path.chmod(0o755)        # the server, as nobody, runs ./in.probe from here
    assert probe.exists()
    fetch(port)
    assert spawned(open_folder / "out1").split() == [
        str(nobody.pw_uid), str(nobody.pw_gid), "0077", "one"]
    assert spawned(open_folder / "out2") == "two\n"
    assert (open_folder / "out1").stat().st_uid == nobody.pw_uid


def test_a_twisted_client_gets_no_banner_success(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "first").write_text("FIRST\n")
    (tmp_path / "success").write_text("SUCCESS\n")
    _, port = start(daemons, tmp_path, monkeypatch, "in.probe: ALL: twist echo twisted\n",
                    extra=f"\tbanner = {tmp_path / 'first'}\n"
                          f"\tbanner_success = {tmp_path / 'success'}\n")
    assert fetch(port) == "FIRST\ntwisted\n"


def dgram_nowait(name: str, port: int, server: Path, extra: str = "") -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = dgram\n"
            f"\twait = no\n\tuser = root\n\tserver = {server}\n\tbind = 127.0.0.1\n"
            f"\tport = {port}\n{extra}}}\n")


def test_options_apply_to_datagram_nowait_servers(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probe = tmp_path / "in.probe"
    probe.write_text(PROBE)
    probe.chmod(0o755)
    twisted = tmp_path / "twisted"
    twisted.symlink_to(probe)
    (tmp_path / "hosts.allow").write_text("in.probe: ALL: umask 027: nice 3\n"
                                          "twisted: ALL: twist echo twisted %d\n")
    (tmp_path / "hosts.deny").write_text("")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    own = os.nice(0)
    out = tmp_path / "out"
    ports = free_port(), free_port()
    daemons.start_config(dgram_nowait("plain", ports[0], probe, f"\tenv = PROBE_OUT={out}\n")
                         + dgram_nowait("twist", ports[1], twisted))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(TIMEOUT)
        client.sendto(b"x", ("127.0.0.1", ports[0]))
        assert spawned(out).splitlines()[0] == f"nice={min(own + 3, 19)} umask=0027"
        # The command's output goes back to the sender, as a server's would.
        client.sendto(b"x", ("127.0.0.1", ports[1]))
        assert client.recv(100) == b"twisted twisted\n"
