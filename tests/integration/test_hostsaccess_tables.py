"""hosts.allow/hosts.deny read as Debian's libwrap reads them, end to end: the daemon
on loopback, tables given through PYXINETD_HOSTS_ALLOW/PYXINETD_HOSTS_DENY, one
connection per verdict.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from tests.daemon import Daemon, DaemonFactory, free_port, namespace_problem, wait_log_lines

TIMEOUT = 10.0


def conf(port: int, log: Path, bind: str = "127.0.0.1", server: str = "/bin/echo hello"
         ) -> str:
    program, _, args = server.partition(" ")
    return f"""
service tables
{{
    type = UNLISTED
    socket_type = stream
    protocol = tcp
    port = {port}
    wait = no
    user = root
    server = {program}
    server_args = {args}
    bind = {bind}
    libwrap = in.tables
    log_type = FILE {log}
    log_on_success = PID HOST
    log_on_failure = HOST
}}
"""


def fetch(port: int, source: str = "127.0.0.1", server: str = "127.0.0.1") -> bytes:
    with socket.create_connection((server, port), timeout=TIMEOUT,
                                  source_address=(source, 0)) as conn:
        chunks = []
        while data := conn.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


def start(daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          allow: str, deny: str, wrapper: tuple[str, ...] = (), bind: str = "127.0.0.1",
          server: str = "/bin/echo hello") -> tuple[Daemon, int, Path]:
    (tmp_path / "hosts.allow").write_text(allow)
    (tmp_path / "hosts.deny").write_text(deny)
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    port = free_port()
    log = tmp_path / "services.log"
    return daemons.start_config(conf(port, log, bind, server), wrapper=wrapper), port, log


@pytest.mark.parametrize("deny", ["in.other: ALL", "# no newline after this comment",
                                  "in.other: ALL \\\n", "x" * 2100 + "\nin.other: ALL\n"],
                         ids=["rule", "comment", "continued", "too-long"])
def test_unreadable_last_line_of_hosts_deny_refuses(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        deny: str) -> None:
    daemon, port, log = start(daemons, tmp_path, monkeypatch, "", deny)
    assert fetch(port) == b""
    wait_log_lines(log, re.escape("FAIL: tables libwrap from=127.0.0.1"), timeout=TIMEOUT)
    daemon.wait_for_log(r"hosts.deny, line \d+: missing newline or line too long",
                        timeout=TIMEOUT)


def test_unreadable_line_ends_the_scan_of_hosts_allow(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The allowing rule after the long line is never reached, so hosts.deny decides.
    daemon, port, log = start(daemons, tmp_path, monkeypatch,
                              "y" * 2100 + "\nin.tables: ALL\n", "in.tables: ALL\n")
    assert fetch(port) == b""
    wait_log_lines(log, re.escape("FAIL: tables libwrap from=127.0.0.1"), timeout=TIMEOUT)
    # Without a newline the last rule of hosts.allow does not apply either.
    (tmp_path / "hosts.allow").write_text("# denied unless the newline is there\n"
                                          "in.tables: 127.0.0.1: deny")
    (tmp_path / "hosts.deny").write_text("")
    time.sleep(1.2)     # the tables are looked at again at most once a second
    assert fetch(port) == b"hello\n"
    daemon.wait_for_log(r"hosts.allow, line 2: missing newline", timeout=TIMEOUT)


@pytest.mark.parametrize(("listed", "served"), [
    ("# 127.0.0.1\n", False),           # '#' starts no comment: 127.0.0.1 is listed
    ("#127.0.0.1\n", True),             # one word, `#127.0.0.1`, that matches nobody
    ("127.0.0.2,127.0.0.1\n", True),    # commas do not separate: one word
    ("127.0.0.2\n\t127.0.0.1", False),  # any blanks separate, a newline at the end or not
])
def test_file_pattern_lists_blank_separated_words(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        listed: str, served: bool) -> None:
    (tmp_path / "blocked").write_text(listed)
    daemon, port, log = start(daemons, tmp_path, monkeypatch, "",
                              f"in.tables: {tmp_path / 'blocked'}\n")
    assert fetch(port) == (b"hello\n" if served else b"")
    wait_log_lines(log, re.escape("START: tables" if served else
                                  "FAIL: tables libwrap from=127.0.0.1"), timeout=TIMEOUT)


# 127.0.0.9's name is "127.0.0.10", whose forward lookup never gives 127.0.0.9 back:
# a PARANOID client, in a mount namespace of the daemon's own with this /etc/hosts.
PARANOID_HOSTS = "127.0.0.1 localhost\n127.0.0.9 127.0.0.10\n"


@pytest.mark.skipif(namespace_problem("mount") is not None,
                    reason=str(namespace_problem("mount")))
@pytest.mark.parametrize(("deny", "served"), [
    ("in.tables: PARANOID\n", False),
    ("in.tables: UNKNOWN\n", True),    # its name is known, only wrong: not UNKNOWN
    ("in.tables: KNOWN\n", True),
    ("in.tables: paranoid\n", False),  # the name reads `paranoid`, as in %n
])
def test_paranoid_client_is_not_unknown(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        deny: str, served: bool) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(PARANOID_HOSTS)
    wrapper = ("unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
               str(hosts))
    daemon, port, log = start(daemons, tmp_path, monkeypatch, "", deny, wrapper)
    assert fetch(port, "127.0.0.9") == (b"hello\n" if served else b"")
    wait_log_lines(log, re.escape("START: tables" if served else
                                  "FAIL: tables libwrap from=127.0.0.9"), timeout=TIMEOUT)


@pytest.mark.skipif(namespace_problem("mount") is not None,
                    reason=str(namespace_problem("mount")))
def test_client_name_keeps_its_case(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # libwrap shows the name as the resolver gave it; its patterns ignore case.
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n127.0.0.9 Mixed.Example.COM\n")
    wrapper = ("unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
               str(hosts))
    daemon, port, log = start(daemons, tmp_path, monkeypatch,
                              "in.tables: .EXAMPLE.com: twist echo %n %h %c\n", "", wrapper)
    assert fetch(port, "127.0.0.9") == b"Mixed.Example.COM Mixed.Example.COM Mixed.Example.COM\n"
    daemon.wait_for_log(re.escape("INFO: twist Mixed.Example.COM to echo Mixed.Example.COM "),
                        timeout=TIMEOUT)


@pytest.mark.skipif(namespace_problem("mount") is not None,
                    reason=str(namespace_problem("mount")))
@pytest.mark.parametrize(("name", "answer"), [
    # One label of 119 characters: more than DNS allows, but the resolver reads it from
    # /etc/hosts and confirms it (checked with xinetd and Debian's libwrap).
    ("a" * 119 + ".example", "known"),
    ("a" * 60 + "." + "b" * 58 + ".example", "known"),       # 127 bytes
    # libwrap cuts a name of 128 bytes or more, and the cut name does not resolve.
    ("a" * 60 + "." + "b" * 59 + ".example", "paranoid"),
], ids=["long-label", "127-bytes", "128-bytes"])
def test_long_client_names_as_libwrap_sees_them(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        name: str, answer: str) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n127.0.0.9 {name}\n")
    wrapper = ("unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
               str(hosts))
    daemon, port, log = start(daemons, tmp_path, monkeypatch,
                              "in.tables: KNOWN: twist echo known\n"
                              "in.tables: PARANOID: twist echo paranoid\n", "", wrapper)
    assert fetch(port, "127.0.0.9") == f"{answer}\n".encode()


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(("deny", "served"), [
    ("in.tables: [::2]/64\n", False),       # the net is masked: ::/64 holds ::1
    ("in.tables: [::1]/64x\n", False),      # the length is read as atoi reads it
    ("in.tables: [::ffff:0:0]/96\n", True),
    ("in.tables: [::2]\n", True),
])
def test_ipv6_net_patterns_as_libwrap_reads_them(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        deny: str, served: bool) -> None:
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    daemon, port, log = start(daemons, tmp_path, monkeypatch, "", deny, bind="::1")
    assert fetch(port, "::1", "::1") == (b"hello\n" if served else b"")
    wait_log_lines(log, re.escape("START: tables" if served else
                                  "FAIL: tables libwrap from=::1"), timeout=TIMEOUT)


@pytest.mark.parametrize(("deny", "served"), [
    ("in.tables: 127.0.0.0/8x\n", False),
    ("in.tables: 127.0.0.0/+8\n", False),
    ("in.tables: 0177.0.0.0/255.0.0.0\n", False),   # octal, as inet_addr reads it
    ("in.tables: 127.0.0.1/255.255.255.255\n", True),  # INADDR_NONE: a bad pattern
    ("in.tables: 127.0.0.1/24\n", True),            # the net is not masked
])
def test_ipv4_net_patterns_as_libwrap_reads_them(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        deny: str, served: bool) -> None:
    daemon, port, log = start(daemons, tmp_path, monkeypatch, "", deny)
    assert fetch(port) == (b"hello\n" if served else b"")
    wait_log_lines(log, re.escape("START: tables" if served else
                                  "FAIL: tables libwrap from=127.0.0.1"), timeout=TIMEOUT)


@pytest.mark.parametrize("option", [
    "linger 99999999999", "linger -1", "rfc931 0", "umask 1000", "umask 7777",
    "user nobody.", "setenv GREETING=hi", "setenv GREETING= hi",
])
def test_option_values_libwrap_rejects_refuse(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        option: str) -> None:
    daemon, port, log = start(daemons, tmp_path, monkeypatch,
                              f"in.tables: ALL: {option}\n", "")
    for attempt in (1, 2):      # the service keeps serving after a refusal
        assert fetch(port) == b""
        wait_log_lines(log, re.escape("FAIL: tables libwrap from=127.0.0.1"), count=attempt,
                       timeout=TIMEOUT)
    daemon.wait_for_log(r"ERROR: .*hosts.allow, line 1: bad|ERROR: .*unknown group",
                        timeout=TIMEOUT)


@pytest.mark.parametrize("option", ["nice +5", "linger +3", "rfc931 +3", "umask +22"])
def test_option_values_with_a_plus_sign_are_numbers(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        option: str) -> None:
    daemon, port, log = start(daemons, tmp_path, monkeypatch,
                              f"in.tables: ALL: {option}\n", "")
    assert fetch(port) == b"hello\n"


def test_setenv_name_ends_at_any_blank(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    daemon, port, log = start(daemons, tmp_path, monkeypatch,
                              "in.tables: ALL: setenv GREETING\thello there \n", "",
                              server="/usr/bin/env env")
    assert "GREETING=hello there" in fetch(port).decode().splitlines()


@pytest.mark.parametrize("broken", ["loop", "not-a-folder"])
def test_hosts_deny_that_cannot_be_opened_refuses(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        broken: str) -> None:
    # libwrap takes a table it cannot open for a reason other than its absence (here a
    # symbolic link loop, or a path through a file) as an error: hosts.deny then
    # refuses every request that hosts.allow did not grant, instead of granting it.
    daemon, port, log = start(daemons, tmp_path, monkeypatch, "in.tables: 127.0.0.2\n", "")
    deny = tmp_path / "hosts.deny"
    deny.unlink()
    if broken == "loop":
        deny.symlink_to(deny.name)
    else:
        (tmp_path / "file").write_text("")
        deny.symlink_to(tmp_path / "file" / "hosts.deny")
    time.sleep(1.2)     # the tables are looked at again at most once a second
    assert fetch(port) == b""
    wait_log_lines(log, re.escape("FAIL: tables libwrap from=127.0.0.1"), timeout=TIMEOUT)
    daemon.wait_for_log(re.escape(f"cannot open {deny}: ") + r".*: every request is refused",
                        timeout=TIMEOUT)
    # hosts.allow is still read first.
    assert fetch(port, source="127.0.0.2") == b"hello\n"
    # A dangling link is an absent file: nothing refuses.
    deny.unlink()
    deny.symlink_to(tmp_path / "nowhere")
    time.sleep(1.2)
    assert fetch(port) == b"hello\n"


def test_hosts_allow_that_cannot_be_opened_matches_nothing(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    daemon, port, log = start(daemons, tmp_path, monkeypatch, "", "in.tables: 127.0.0.2\n")
    allow = tmp_path / "hosts.allow"
    allow.unlink()
    allow.symlink_to(allow.name)
    time.sleep(1.2)
    assert fetch(port) == b"hello\n"
    assert fetch(port, source="127.0.0.2") == b""
    daemon.wait_for_log(re.escape(f"cannot open {allow}: ") + r".*: no rule of it applies",
                        timeout=TIMEOUT)


@pytest.mark.parametrize(("allow", "deny", "served"), [
    # libwrap's text of the rule ends at the NUL: `127.0.0.0/255.0.0.0` matches.
    ("", "in.tables: 127.0.0.0/255.0.0.0\0 junk\n\n", False),
    # The line cut at its NUL is joined to the next one: `127.0.0.` `1` is 127.0.0.1.
    ("in.tables: 127.0.0.\0junk\n1\n", "ALL: ALL\n", True),
    ("in.tables: 127.0.0.2\0\n", "", True),     # the end of the file cuts the rule: no match
    ("", "\0in.tables: ALL\n", True),              # nothing kept: the end of the table
], ids=["cut", "joined", "cut-at-the-end", "nothing-kept"])
def test_nul_byte_in_a_table_ends_the_line_as_libwrap_reads_it(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        allow: str, deny: str, served: bool) -> None:
    daemon, port, log = start(daemons, tmp_path, monkeypatch, allow, deny)
    assert fetch(port) == (b"hello\n" if served else b"")
    outcome = "START: tables" if served else "FAIL: tables libwrap"
    wait_log_lines(log, re.escape(f"{outcome} ") + r".*from=127\.0\.0\.1", timeout=TIMEOUT)
    assert daemon.proc.poll() is None
    assert "Traceback" not in daemon.log()


def test_bytes_not_utf8_count_once_in_the_length_of_a_rule(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 1,500 bytes of Latin-1 fit in libwrap's 2,048-byte line: the rule is read.
    (tmp_path / "hosts.allow").write_bytes(b"in.tables: 127.0.0.1 " + b"\xe9" * 1500 + b"\n")
    (tmp_path / "hosts.deny").write_bytes(b"ALL: ALL\n")
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    port = free_port()
    daemon = daemons.start_config(conf(port, tmp_path / "services.log"))
    assert fetch(port) == b"hello\n"
    assert "line too long" not in daemon.log()


@pytest.mark.parametrize("allow", [
    "in.tables: 127.0.0.2\v127.0.0.1\n",        # one word, that matches nobody
    "in.tables: 127.0.0.1\f\n",
    "in.tables: 127.0.0.2\u00a0127.0.0.1\n",    # a no-break space is no blank either
    "in.tables: 127.0.0.1: setenv\vX 1\n",      # the option `setenv\vX` is unknown
    "in.tables: 127.0.0.1: allow\u00a0\n",
], ids=["vt-in-list", "ff-after-word", "nbsp-in-list", "vt-in-option", "nbsp-after-option"])
def test_only_blanks_tabs_and_line_ends_separate_as_in_libwrap(
        daemons: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        allow: str) -> None:
    daemon, port, log = start(daemons, tmp_path, monkeypatch, allow, "ALL: ALL\n")
    assert fetch(port) == b""
    wait_log_lines(log, re.escape("FAIL: tables libwrap from=127.0.0.1"), timeout=TIMEOUT)
