"""aclexec, option values and unreadable lines against Debian's libwrap itself.

tcpdmatch never runs aclexec, so the vectors file cannot show what its exit status
does; the library that Debian's xinetd links (unpacked by scripts/fetch-xinetd) can.
Each query runs tests/helpers/libwrap_probe.py in a fresh process; pyxinetd's side is
the evaluator plus the helper's check runner, following `otherwise` on a failure.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from oracle import require_xinetd
from pyxinetd.access.hostsaccess import Decision, evaluate, parse_table
from pyxinetd.access.hoststables import HostsTables
from pyxinetd.access.hostspatterns import Endpoint, Lookups, Request
from pyxinetd.access.resolverhelper import run_check

PROBE = Path(__file__).resolve().parents[1] / "helpers" / "libwrap_probe.py"

CASES = [
    ("ALL: ALL: aclexec /bin/false\n", ""),
    ("ALL: ALL: aclexec /bin/false\n", "ALL: ALL\n"),
    ("ALL: ALL: aclexec /bin/true\n", "ALL: ALL\n"),
    ("", "ALL: ALL: aclexec /bin/false\n"),
    ("", "ALL: ALL: aclexec /bin/true\n"),
    ("ALL: ALL: aclexec /bin/false\nALL: ALL: deny\n", ""),
    ("ALL: ALL: aclexec /bin/false: deny\n", ""),
    ("ALL: ALL: aclexec /bin/false: allow\n", "ALL: ALL\n"),
    ("ALL: ALL: aclexec /bin/false: aclexec /bin/true\n", "ALL: ALL\n"),
    ("ALL: ALL: aclexec /bin/true: aclexec /bin/false\n", "ALL: ALL\n"),
    ("ALL: ALL: aclexec kill -9 $$\n", "ALL: ALL\n"),
    ("ALL: ALL: aclexec test %a = 10.0.0.5 -a %d = in.ftpd\n", "ALL: ALL\n"),
    ("ALL: ALL: aclexec /bin/false\n", "ALL: ALL: aclexec /bin/false\n"),
    ("ALL: ALL: severity auth.warning\n", "ALL: ALL\n"),
    ("ALL: ALL: severity warn\n", ""),
    ("ALL: ALL: severity authpriv.info\n", ""),
    ("ALL: ALL: severity 3\n", ""),
    ("ALL: ALL: rfc931 x\n", ""),
    ("ALL: ALL: rfc931 5\n", "ALL: ALL\n"),
    # Option values libwrap refuses or accepts.
    ("ALL: ALL: setenv X=1\n", ""),
    ("ALL: ALL: linger -1\n", ""),
    ("ALL: ALL: linger +3\n", "ALL: ALL\n"),
    ("ALL: ALL: nice +5\n", "ALL: ALL\n"),
    ("ALL: ALL: umask 1000\n", ""),
    ("ALL: ALL: umask +22\n", "ALL: ALL\n"),
    ("ALL: ALL: user nobody.\n", ""),
    ("ALL: ALL: rfc931 0\n", ""),
    # A last line without its newline, or a rule too long for libwrap's buffer.
    ("", "in.other: ALL"),
    ("", "# comment"),
    ("ALL: ALL: deny", ""),
    ("x" * 2047 + "\nALL: ALL\n", ""),
    ("in.ftpd: 10.0.0.5 " + "y" * 2028 + "\n", "ALL: ALL\n"),
    ("in.ftpd: 10.0.0.5 " + "y" * 2029 + "\n", "ALL: ALL\n"),
    # A NUL byte ends the text of its line; the next line is joined to what is left.
    ("", "in.ftpd: 10.0.0.5\0junk\nALL: ALL\n"),
    ("", "in.ftpd: 10.0.0.5\0junk\n\n"),
    ("", "in.ftpd: 10.0.0.\0\n5\n"),
    ("", "\0\nin.ftpd: 10.0.0.5\n"),
    ("", "\0in.ftpd: ALL\n"),                  # nothing kept at the end of the file
    ("", "in.other: ALL\n\0in.ftpd: ALL\n"),
    ("", "\\\n"),
    ("", "in.ftpd: 10.0.0.0/255.0.0.0\0 junk\n\n"),
    ("in.ftpd: 10.0.0.5\0" + "y" * 3000 + "\n\n", "ALL: ALL\n"),
    # Only " \t\r\n" and commas separate list words; option names end at "= \t\r\n".
    ("", "ALL: 10.0.0.5\v\n"),
    ("", "ALL: 10.0.0.4\f10.0.0.5\n"),
    ("", "ALL: 10.0.0.4\u00a010.0.0.5\n"),
    ("", "ALL\v: 10.0.0.5\n"),
    ("ALL: 10.0.0.5: setenv\vX 1\n", "ALL: ALL\n"),
    ("ALL: 10.0.0.5: allow\u00a0\n", "ALL: ALL\n"),
    ("ALL: 10.0.0.5: \vallow\n", "ALL: ALL\n"),
    ("ALL: 10.0.0.5: setenv X\v1\n", "ALL: ALL\n"),
    # `*` and `?` are the only wildcards: `[...]` is no class (a wrong admit otherwise).
    ("ALL: 1[0].0.0.*\n", "ALL: ALL\n"),
    ("ALL: 10.0.0.[!9]\n", "ALL: ALL\n"),
    ("in.f[t]*: ALL\n", "ALL: ALL\n"),
    ("in.ftp?: 10.0.0.?\n", "ALL: ALL\n"),
]


def libwrap() -> Path:
    wrapper = require_xinetd()      # or skips, saying why it is unavailable
    found = sorted(Path(wrapper).parent.glob("root/**/libwrap.so.0"))
    if not found:
        pytest.skip("libwrap.so.0 not found beside the xinetd oracle")
    return found[0]


def ours(allow: str, deny: str, daemon: str = "in.ftpd") -> str:
    decision: Decision | None = evaluate(
        parse_table(allow, "hosts.allow"), parse_table(deny, "hosts.deny"),
        Request(daemon, Endpoint("10.0.0.5")), Lookups())
    while decision is not None:
        if not decision.aclexec or run_check(list(decision.aclexec), 10.0) == 0:
            return "granted" if decision.granted else "denied"
        decision = decision.otherwise or Decision("granted")
    raise AssertionError("unreachable")


@pytest.mark.parametrize(("allow", "deny"), CASES)
def test_verdict_matches_libwrap(allow: str, deny: str, tmp_path: Path) -> None:
    library = libwrap()
    (tmp_path / "allow").write_text(allow)
    (tmp_path / "deny").write_text(deny)
    done = subprocess.run(
        [sys.executable, str(PROBE), str(library), str(tmp_path / "allow"),
         str(tmp_path / "deny"), "in.ftpd", "10.0.0.5"],
        capture_output=True, text=True, timeout=30, check=True, cwd=tmp_path)
    assert ours(allow, deny) == done.stdout.strip()


# Daemon lists against daemon names: Debian's libwrap tries a pattern with `*` or `?`
# as wildcards first (before `.suffix` and `prefix.`), byte by byte, and any case of
# A-Z only. daemon_may_match decides with the same string_match whether a request
# looks up a name for a rule: a wrong "no" there would skip a deny by name.
DAEMON_LISTS = [
    ("*.", "in.ftpd."),
    ("a*.", "in.ftpd."),
    (".*", ".ftpd"),
    (".*", "x.*"),
    ("*.*.", "a.b."),
    ("f[t]*", "ftpd"),
    ("f[t]*", "f[t]pd"),
    ("F?PD", "ftpd"),
    ("a?b", "a\u00e9b"),
    ("a??b", "a\u00e9b"),
    ("*\u00c9*", "a\u00e9b"),
    ("FTPD", "ftpd"),
    ("IN.", "in.ftpd"),
    (".FTPD", "in.ftpd"),
    ("KNOWN", "ftpd"),
    ("KNOWN", "unknown"),
    ("LOCAL", "ftpd"),
    ("ALL EXCEPT in.ftpd", "in.ftpd"),
    ("ALL EXCEPT in.ftpd", "ftpd"),
    ("EXCEPT ftpd", "ftpd"),
    ("a@b", "a@b"),
    ("except", "except"),
]


@pytest.mark.parametrize(("daemons", "daemon"), DAEMON_LISTS)
def test_daemon_list_matches_libwrap(daemons: str, daemon: str, tmp_path: Path) -> None:
    library = libwrap()
    deny = f"{daemons}: ALL\n"
    (tmp_path / "allow").write_text("")
    (tmp_path / "deny").write_text(deny)
    done = subprocess.run(
        [sys.executable, str(PROBE), str(library), str(tmp_path / "allow"),
         str(tmp_path / "deny"), daemon, "10.0.0.5"],
        capture_output=True, text=True, timeout=30, check=True, cwd=tmp_path)
    verdict = done.stdout.strip()
    assert ours("", deny, daemon) == verdict
    rule = parse_table(deny, "hosts.deny").rules[0]
    assert rule.may_serve(daemon) or verdict == "granted"


# After a failed aclexec, Debian's libwrap keeps the failing status in a static
# variable: the hosts.deny rule that matches next is taken as not matching too when it
# has options but none that ends the processing (allow, deny, twist, an error) and no
# aclexec of its own, so the request is granted. pyxinetd refuses it, as a hosts.deny
# match does (docs/compatibility.md).
STALE_ACLEXEC = [
    ("ALL: ALL: aclexec /bin/false\n", "ALL: ALL: spawn /bin/true\n"),
    ("ALL: ALL: aclexec /bin/false\n", "ALL: ALL: banners /nonexistent\n"),
    ("ALL: ALL: aclexec /bin/true: aclexec /bin/false\n", "ALL: ALL: severity info\n"),
]


@pytest.mark.parametrize(("allow", "deny"), STALE_ACLEXEC)
def test_a_failed_aclexec_does_not_open_the_hosts_deny_rule_after_it(
        allow: str, deny: str, tmp_path: Path) -> None:
    library = libwrap()
    (tmp_path / "allow").write_text(allow)
    (tmp_path / "deny").write_text(deny)
    done = subprocess.run(
        [sys.executable, str(PROBE), str(library), str(tmp_path / "allow"),
         str(tmp_path / "deny"), "in.ftpd", "10.0.0.5"],
        capture_output=True, text=True, timeout=30, check=True, cwd=tmp_path)
    assert done.stdout.strip() == "granted"     # libwrap's stale status
    assert ours(allow, deny) == "denied"


# A table that exists but cannot be opened is an error in libwrap, not an empty file:
# hosts.deny refuses, hosts.allow matches nothing. A dangling link is a missing file.
UNOPENABLE = [("allow", "loop"), ("allow", "through-a-file"), ("deny", "loop"),
              ("deny", "through-a-file"), ("deny", "dangling")]


@pytest.mark.parametrize(("which", "how"), UNOPENABLE)
def test_table_that_cannot_be_opened(which: str, how: str, tmp_path: Path) -> None:
    library = libwrap()
    (tmp_path / "file").write_text("")
    (tmp_path / "allow").write_text("in.ftpd: 10.0.0.6\n")
    (tmp_path / "deny").write_text("in.ftpd: 10.0.0.7\n")
    broken = tmp_path / which
    broken.unlink()
    broken.symlink_to({"loop": which, "through-a-file": str(tmp_path / "file" / "x"),
                       "dangling": str(tmp_path / "nowhere")}[how])
    tables = HostsTables(str(tmp_path / "allow"), str(tmp_path / "deny"))
    for client in ("10.0.0.5", "10.0.0.6", "10.0.0.7"):
        done = subprocess.run(
            [sys.executable, str(PROBE), str(library), str(tmp_path / "allow"),
             str(tmp_path / "deny"), "in.ftpd", client],
            capture_output=True, text=True, timeout=30, check=True, cwd=tmp_path)
        decision = evaluate(*tables.current(), Request("in.ftpd", Endpoint(client)),
                            Lookups())
        assert decision.access == done.stdout.strip(), client


# A host whose name is `unknown` or `paranoid` (any case), even as the DNS gives it, is
# not KNOWN for libwrap (HOSTNAME_KNOWN compares the name with those words).
NAMED = [
    ("ALL: KNOWN\n", "ALL: ALL\n", "unknown"),
    ("ALL: KNOWN\n", "ALL: ALL\n", "Paranoid"),
    ("ALL: LOCAL\n", "ALL: ALL\n", "UNKNOWN"),
    ("", "ALL: ALL EXCEPT KNOWN\n", "unknown"),
    ("ALL: KNOWN@ALL\n", "ALL: ALL\n", "unknown"),
    ("ALL: UNKNOWN\n", "ALL: ALL\n", "unknown"),
    ("ALL: PARANOID\n", "ALL: ALL\n", "paranoid"),
    ("ALL: KNOWN\n", "ALL: ALL\n", "localhost"),
    ("ALL: LOCAL\n", "ALL: ALL\n", "host.example.com"),
]


@pytest.mark.parametrize(("allow", "deny", "name"), NAMED)
def test_verdict_on_a_named_client_matches_libwrap(allow: str, deny: str, name: str,
                                                   tmp_path: Path) -> None:
    library = libwrap()
    (tmp_path / "allow").write_text(allow)
    (tmp_path / "deny").write_text(deny)
    done = subprocess.run(
        [sys.executable, str(PROBE), str(library), str(tmp_path / "allow"),
         str(tmp_path / "deny"), "in.ftpd", "10.0.0.5", name],
        capture_output=True, text=True, timeout=30, check=True, cwd=tmp_path)
    paranoid = name.lower() == "paranoid"
    client = Endpoint("10.0.0.5", name=None if paranoid else name, paranoid=paranoid)
    decision = evaluate(parse_table(allow, "hosts.allow"), parse_table(deny, "hosts.deny"),
                        Request("in.ftpd", client), Lookups())
    assert decision.access == done.stdout.strip()


# fscanf reads a `/file` list's words with their NUL bytes, and a NUL ends the word as C
# sees it: a binary file named as a list is read, not an error.
NUL_LISTS = [b"10.0.0.5\0tail\n", b"10.0.0.0/255.0.0.0\0x\n", b"\0010.0.0.5\n",
             b"10.0.0.0/255.0.0.0\0\n", b"junk\0 [::1]\0/8 10.\0x\n"]


@pytest.mark.parametrize("content", NUL_LISTS)
def test_a_list_file_with_nul_bytes_matches_as_in_libwrap(content: bytes,
                                                          tmp_path: Path) -> None:
    library = libwrap()
    (tmp_path / "list").write_bytes(content)
    allow = f"ALL: {tmp_path / 'list'}\n"
    (tmp_path / "allow").write_text(allow)
    (tmp_path / "deny").write_text("ALL: ALL\n")
    done = subprocess.run(
        [sys.executable, str(PROBE), str(library), str(tmp_path / "allow"),
         str(tmp_path / "deny"), "in.ftpd", "10.0.0.5"],
        capture_output=True, text=True, timeout=30, check=True, cwd=tmp_path)
    assert ours(allow, "ALL: ALL\n") == done.stdout.strip()


# A few seeded random rule sets, built from words of every kind, judged by both sides.
# Left out: IPv4-mapped patterns and aclexec, where pyxinetd deviates on purpose
# (docs/compatibility.md).
DAEMON_WORDS = ["ALL", "in.ftpd", "IN.FTPD", "in.*", "in.ft?d", "in.", "sshd", ".ftpd",
                "in.ftpd@ALL", "ALL@UNKNOWN"]
CLIENT_WORDS = ["ALL", "10.0.0.5", "10.", "10.0.0.0/255.0.0.0", "10.0.0.0/8", "10.0.0.0/24",
                "[::1]", "[fe80::]/10", "10.0.0.?", "*.0.0.5", "LOCAL", "KNOWN", "UNKNOWN",
                "PARANOID", "localhost", ".example.com", "012.0.0.5", "unknown@ALL",
                "/nonexistent"]
OPTION_WORDS = ["allow", "deny", "severity auth.info", "severity bogus", "frobnicate",
                "spawn /bin/true", "nice x"]


def _words(rng: random.Random, pool: list[str]) -> str:
    words = [rng.choice(pool) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.4:
        words += ["EXCEPT", rng.choice(pool)]
    return rng.choice([" ", ", ", "\t"]).join(words)


def _table(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(0, 3)):
        line = f"{_words(rng, DAEMON_WORDS)}: {_words(rng, CLIENT_WORDS)}"
        if rng.random() < 0.4:
            line += f": {rng.choice(OPTION_WORDS)}"
        lines.append(rng.choice([line, line, line.lower(), "# " + line, ""]))
    return "".join(f"{line}\n" for line in lines)


@pytest.mark.parametrize("seed", range(6))
def test_seeded_rule_sets_match_libwrap(seed: int, tmp_path: Path) -> None:
    library = libwrap()
    rng = random.Random(seed)
    for _ in range(4):
        allow, deny = _table(rng), _table(rng)
        (tmp_path / "allow").write_text(allow)
        (tmp_path / "deny").write_text(deny)
        daemon = rng.choice(["in.ftpd", "sshd"])
        done = subprocess.run(
            [sys.executable, str(PROBE), str(library), str(tmp_path / "allow"),
             str(tmp_path / "deny"), daemon, "10.0.0.5"],
            capture_output=True, text=True, timeout=30, check=True, cwd=tmp_path)
        decision = evaluate(parse_table(allow, "hosts.allow"),
                            parse_table(deny, "hosts.deny"),
                            Request(daemon, Endpoint("10.0.0.5")), Lookups())
        assert decision.access == done.stdout.strip(), (allow, deny, daemon)


# The wider generator: the shapes real files take that the seeded sets above do not
# (continued lines, comments and `#` words, long lines, `daemon@host` and `user@host`,
# IPv6 and odd netmasks, EXCEPT twice, empty fields, extra colons, `/file` lists, option
# words with odd arguments), against clients with or without names, users and servers.
# Left out, as above: IPv4-mapped clients and patterns, aclexec, and numbers beyond a C
# int (docs/compatibility.md). Run it longer by hand: PYXINETD_WRAPFUZZ_QUERIES=50000 (PYXINETD_WRAPFUZZ_SEED too).
BATCH_PROBE = Path(__file__).resolve().parents[1] / "helpers" / "libwrap_batch_probe.py"
WIDE_DAEMONS = ["ALL", "all", "in.ftpd", "IN.FTPD", "in.*", "in.", "in..", ".ftpd", "..ftpd",
                "sshd", "*", "?", "in.ftpd@10.0.0.1", "in.ftpd@127.0.0.1", "ALL@::1",
                "ALL@[::1]", "ALL@server.example.com", "ALL@.example.com", "ALL@LOCAL",
                "in.ftpd@KNOWN", "ALL@UNKNOWN", "ALL@10.0.0.0/255.255.255.0", "ALL@10.",
                "@", "in.ftpd@", "@ALL", "ALL@ALL@ALL", "ALL@in.ftpd@10.0.0.1", "except",
                "Except", "LOCAL", "KNOWN", "in.ftpd@/LIST"]
WIDE_CLIENTS = [
    "ALL", "all", "10.0.0.5", "10.", "10.0.", "10..", "10...", ".10.0.0.5", "10.0.0.5.",
    ".0.0.5", ".", "..", "0.5", "10.0.0.5/255.255.255.255", "10.0.0.4/255.255.255.254",
    "10.0.0.0/255.0.255.0", "10.0.0.1/255.255.255.1", "0.0.0.5/0.0.0.255",
    "10.0.0.0/0.0.0.0", "0.0.0.0/0.0.0.0", "10.0.0.0/8", "10.0.0.0/33", "10.0.0.5/32",
    "10.0.0.0/0", "10.0.0.0/-1", "10.0.0.0/08", "10.0.0.0/255.0.0", "10.0.0.0/",
    "10.0.0/255.255.255.0", "10.0.0.0/255.0.0.0.0", "/255.0.0.0", "10.0.0.0/8/8",
    "[::1]", "[::1]/128", "[::]/0", "[::1]/127", "[fe80::]/10", "[::1", "::1", "[10.0.0.5]", "[::1]/200", "[::1]/-1",
    "[::1]/", "[0::1]", "[::1]x", "KNOWN@ALL", "UNKNOWN@ALL", "KNOWN@10.0.0.5",
    "alice@10.0.0.5", "ALICE@ALL", "alice@KNOWN", "a*@ALL", "%u@ALL", "@10.0.0.5",
    "alice@", "alice@[::1]", "ALL@ALL", "x@y@10.0.0.5", "@netgroup", "@",
    "host.example.com", ".example.com", "HOST.EXAMPLE.COM", ".EXAMPLE.COM", ".com.",
    "host.", "host..", "localhost", "LOCALHOST", ".localhost", "LOCAL", "KNOWN",
    "UNKNOWN", "PARANOID", "012.0.0.5", "10.0.0.05", "/nonexistent", "#", "#10.0.0.5",
    "10.0.0.5#", "/LIST", "alice@/LIST", "in.ftpd"]
WIDE_OPTIONS = [
    "allow", "deny", "ALLOW", "Deny", "allow x", "deny=", "allow=x", "spawn /bin/true",
    "spawn", "spawn=/bin/true", "twist /bin/true", "TWIST=/bin/true", "setenv X 1",
    "setenv X", "setenv", "setenv =1", "setenv X=1", "umask 022", "umask 999", "umask",
    "umask 0x1", "user nobody", "user nobody.nogroup", "user nosuchuser", "user",
    "user .nogroup", "user 0", "nice", "nice 5", "nice -5", "nice x", "keepalive",
    "keepalive x", "linger 5", "linger", "linger x", "rfc931", "rfc931 3", "rfc931 -1",
    "banners /nonexistent", "banners", "severity", "severity auth.info", "severity info",
    "severity local0.bogus", "severity AUTH.INFO", "frobnicate", "frobnicate x", "=",
    "", " ", "allow ", " deny", "\tallow", "setenv X %a", "setenv %d 1", "setenv X%c=1 2",
    "spawn echo %z %", "severity %d", "umask 0777", "umask 07777", "nice 100",
    "linger 2147483647", "rfc931 2147483647", "user root.root", "user nobody.",
    "user :", "keepalive=", "banners=/nonexistent", "twist", "twist %h"]
WIDE_REQUESTS = [
    # (client address, client name, user, server address, server name)
    ("10.0.0.5", "", "", "", ""), ("10.0.0.5", "host.example.com", "", "", ""),
    ("10.0.0.5", "", "alice", "10.0.0.1", ""), ("::1", "", "", "::1", ""),
    ("::1", "localhost", "ALICE", "", ""), ("127.0.0.1", "localhost", "", "127.0.0.1", ""),
    ("10.0.0.5", "host.example.com", "alice", "127.0.0.1", "server.example.com"),
    ("10.0.0.5", "", "", "10.0.0.1", "localhost"), ("10.0.0.5", "Host.Example.COM.", "", "", ""),
    ("fe80::1", "", "unknown", "fe80::2", "LOCALHOST"), ("10.0.0.5", "10.0.0.5", "KNOWN", "", ""),
    ("10.0.0.5", "unknown", "", "10.0.0.1", "unknown")]


def _wide_words(rng: random.Random, pool: list[str], lists: list[str]) -> str:
    words = [rng.choice(pool) for _ in range(rng.randint(0 if rng.random() < 0.05 else 1, 4))]
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2])):
        words += [rng.choice(["EXCEPT", "except", "Except"]), rng.choice(pool)]
    text = rng.choice([" ", ", ", ",", "\t", " , ", ",,"]).join(words)
    while "/LIST" in text:
        text = text.replace("/LIST", rng.choice(lists), 1)
    return text


def _continued(rng: random.Random, line: str) -> str:
    """`line` broken at random places with a backslash-newline (libwrap joins them)."""
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(line) + 1)
        line = line[:at] + "\\\n" + line[at:]
    return line


def _wide_line(rng: random.Random, lists: list[str]) -> str:
    fields = [_wide_words(rng, WIDE_DAEMONS, lists), _wide_words(rng, WIDE_CLIENTS, lists)]
    fields += [rng.choice(WIDE_OPTIONS) for _ in range(rng.choice([0, 0, 1, 1, 2, 3]))]
    line = rng.choice([":", ": ", " : ", ":\t"]).join(fields)
    roll = rng.random()
    if roll < 0.1:
        line = _continued(rng, line)
    elif roll < 0.15:
        line = rng.choice(["#", "# ", " #", "\t# "]) + line
    elif roll < 0.2:
        line = "# " + _continued(rng, line)
    elif roll < 0.25:
        line += rng.choice([" # comment", "#", " #:deny", " \\"])
    elif roll < 0.28:
        pad = " ".join(["10.0.0.9"] * rng.randint(200, 260))
        line = line.replace(":", f": {pad}", 1) if ":" in line else line + pad
    elif roll < 0.31:
        line = line.upper()
    elif roll < 0.34:
        line = rng.choice([":", "::", "", " ", "ALL", ": ALL", "ALL:", "ALL::", ":::"])
    return line + rng.choice(["\n"] * 12 + ["\r\n", " \n", "\\\n"])


def _wide_table(rng: random.Random, lists: list[str]) -> str:
    return "".join(_wide_line(rng, lists) for _ in range(rng.randint(0, 4)))


def _wide_list(rng: random.Random) -> str:
    words = [rng.choice(WIDE_CLIENTS[:60] + ["EXCEPT", "ALL", "#", "\\"])
             for _ in range(rng.randint(0, 5))]
    text = ""
    for word in words:
        text += word + rng.choice(["\n", " ", "\t", "\\\n", ",", " # x\n"])
    return text


def _wide_queries(seed: int, count: int, folder: Path) -> Iterator[dict[str, str]]:
    rng = random.Random(seed)
    lists = [str(folder / f"list{i}") for i in range(3)]
    for number in range(count):
        for path in lists:
            Path(path).write_text(_wide_list(rng))
        allow, deny = folder / f"allow{number % 2}", folder / f"deny{number % 2}"
        allow.write_text(_wide_table(rng, lists))
        deny.write_text(_wide_table(rng, lists))
        client, name, user, server, server_name = rng.choice(WIDE_REQUESTS)
        yield {"allow": str(allow), "deny": str(deny),
               "daemon": rng.choice(["in.ftpd", "sshd", "IN.FTPD"]), "client": client,
               "name": name, "user": user, "server": server, "server_name": server_name}


def _wide_ours(query: dict[str, str]) -> str:
    request = Request(query["daemon"], Endpoint(query["client"], name=query["name"] or None),
                      Endpoint(query["server"] or None, name=query["server_name"] or None),
                      user=query["user"] or None)
    tables = HostsTables(query["allow"], query["deny"])
    return evaluate(*tables.current(), request, Lookups()).access


def test_wide_rule_sets_match_libwrap(tmp_path: Path) -> None:
    library = libwrap()
    count = int(os.environ.get("PYXINETD_WRAPFUZZ_QUERIES", "60"))
    seed = int(os.environ.get("PYXINETD_WRAPFUZZ_SEED", "0"))
    differences = []
    with subprocess.Popen([sys.executable, str(BATCH_PROBE), str(library)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                          cwd=tmp_path) as probe:
        assert probe.stdin is not None and probe.stdout is not None
        for query in _wide_queries(seed, count, tmp_path):
            probe.stdin.write(json.dumps(query) + "\n")
            probe.stdin.flush()
            theirs = probe.stdout.readline().strip()
            mine = _wide_ours(query)
            if mine != theirs:
                differences.append((theirs, mine, query, Path(query["allow"]).read_text(),
                                    Path(query["deny"]).read_text()))
                if len(differences) >= 5:
                    break
        probe.stdin.close()
    assert not differences, differences
