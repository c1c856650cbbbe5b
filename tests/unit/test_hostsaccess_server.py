"""The hosts_access evaluator's server side and the options beyond the vectors file:
`daemon@host` patterns, every `%` expansion, what a table needs before a request can be
evaluated, `aclexec`'s fallback decision and `severity`.

Where the vectors file has no case, the expected results are what Debian's libwrap
7.6.q (the one the xinetd oracle links) answered for the same tables.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pyxinetd.access.hostsaccess import Decision, evaluate, expand, parse_table
from pyxinetd.access.hostsoptions import parse_option
from pyxinetd.access.hostspatterns import (MAX_UNOPENABLE_REMEMBERED, Endpoint, Lookups,
                                            Request, files_need_names, host_match)

CLIENT = Endpoint("10.0.0.5", name="host5.example.com", port=40000)
SERVER = Endpoint("192.0.2.1", name="ftp.example.com", port=21)


def decide(allow: str, deny: str, request: Request, *, serving: bool = True) -> Decision:
    return evaluate(parse_table(allow, "hosts.allow"), parse_table(deny, "hosts.deny"),
                    request, Lookups(), serving=serving)


def request(server: Endpoint = SERVER, client: Endpoint = CLIENT, daemon: str = "in.ftpd",
            user: str | None = None) -> Request:
    return Request(daemon, client, server, user=user, pid=4242)


# -- daemon@host ---------------------------------------------------------------

@pytest.mark.parametrize(("pattern", "server", "matches"), [
    ("in.ftpd@192.0.2.1", SERVER, True),
    ("in.ftpd@192.0.2.2", SERVER, False),
    ("in.ftpd@192.0.2.", SERVER, True),
    ("in.ftpd@192.0.2.0/255.255.255.0", SERVER, True),
    ("in.ftpd@192.0.2.0/24", SERVER, True),
    ("in.ftpd@198.51.100.0/24", SERVER, False),
    ("in.ftpd@ftp.example.com", SERVER, True),
    ("in.ftpd@FTP.Example.COM", SERVER, True),
    ("in.ftpd@.example.com", SERVER, True),
    ("in.ftpd@KNOWN", SERVER, True),
    ("in.ftpd@KNOWN", Endpoint("192.0.2.1"), False),
    ("in.ftpd@UNKNOWN", Endpoint("192.0.2.1"), True),
    ("in.ftpd@PARANOID", Endpoint("192.0.2.1", paranoid=True), True),
    ("in.ftpd@ALL", Endpoint(), True),
    ("in.ftpd@192.0.2.1", Endpoint(), False),          # server endpoint unknown
    ("in.ftpd@ftp.example.com", Endpoint("192.0.2.1"), False),   # name not known
    ("ALL@192.0.2.1", SERVER, True),
    ("in.telnetd@192.0.2.1", SERVER, False),
    ("in.ftpd@[2001:db8::1]", Endpoint("2001:db8::1"), True),
    ("in.ftpd@[2001:db8::]/64", Endpoint("2001:db8::1"), True),
    ("in.ftpd@[2001:db8::]/64", Endpoint("2001:db9::1"), False),
])
def test_daemon_at_host(pattern: str, server: Endpoint, matches: bool) -> None:
    decision = decide(f"{pattern}: ALL\n", "ALL: ALL\n", request(server))
    assert decision.access == ("granted" if matches else "denied")


def test_daemon_at_host_with_except() -> None:
    allow = "ALL@127.0.0.0/8 EXCEPT in.ftpd@127.0.0.2: ALL\n"
    assert decide(allow, "ALL: ALL\n", request(Endpoint("127.0.0.1"))).granted
    assert not decide(allow, "ALL: ALL\n", request(Endpoint("127.0.0.2"))).granted
    assert decide(allow, "ALL: ALL\n", request(Endpoint("127.0.0.2"), daemon="x")).granted


# -- % expansions ----------------------------------------------------------------

@pytest.mark.parametrize(("text", "req", "expected"), [
    ("%a %A", request(), "10.0.0.5 192.0.2.1"),
    ("%h %H", request(), "host5.example.com ftp.example.com"),
    ("%n %N", request(), "host5.example.com ftp.example.com"),
    ("%r %R", request(), "40000 21"),
    ("%d %p", request(), "in.ftpd 4242"),
    ("%s", request(), "in.ftpd@ftp.example.com"),
    ("%c %u", request(), "10.0.0.5 unknown".replace("10.0.0.5", "host5.example.com")),
    ("%c %u", request(user="joe"), "joe@host5.example.com joe"),
    ("%%", request(), "%"),
    # Names not known: %h %H %s fall back to the address, %n %N say unknown.
    ("%h %H %n %N %s", request(Endpoint("192.0.2.1", port=21), Endpoint("10.0.0.5")),
     "10.0.0.5 192.0.2.1 unknown unknown in.ftpd@192.0.2.1"),
    # Lookups that disagree with the address: paranoid.
    ("%n %N %h", request(Endpoint("192.0.2.1", paranoid=True),
                         Endpoint("10.0.0.5", paranoid=True)),
     "paranoid paranoid 10.0.0.5"),
    # Nothing known about the server (a request without endpoints).
    ("%A %H %N %R %s", request(Endpoint()), "unknown unknown unknown 0 in.ftpd"),
    ("%c", request(client=Endpoint("10.0.0.5"), user="b;ob"), "b_ob@10.0.0.5"),
])
def test_expansions(text: str, req: Request, expected: str) -> None:
    assert expand(text, req) == expected


def test_expansions_reach_spawn_twist_and_setenv() -> None:
    allow = ("in.ftpd: ALL: spawn echo %A\\:%R %H : setenv SERVER %s : "
             "twist echo %N %r\n")
    decision = decide(allow, "", request())
    assert decision.spawn == ("echo 192.0.2.1:21 ftp.example.com",)
    assert decision.setenv == (("SERVER", "in.ftpd@ftp.example.com"),)
    assert decision.twist == "echo ftp.example.com 40000"
    assert decision.access == "delegated"


@pytest.mark.parametrize(("options", "logged"), [
    ("twist echo hi", "a$b`c`;d"),
    ("twist echo %a %d", "a$b`c`;d"),
    ("twist echo %n", "a_b_c__d"),
    ("spawn echo %h: twist echo hi", "a_b_c__d"),
    ("setenv X %c: twist echo hi", "a_b_c__d"),
])
def test_twist_client_is_made_safe_only_by_an_expansion_of_it(
        options: str, logged: str) -> None:
    # libwrap replaces the unsafe characters in the request's own copy of the name when
    # it expands %h, %n or %c: its `twist CLIENT to CMD` line shows the name as the
    # resolver gave it until then (seen with xinetd and Debian's libwrap).
    client = Endpoint("10.0.0.5", name="a$b`c`;d", port=40000)
    decision = decide(f"in.ftpd: KNOWN: {options}\n", "", request(client=client))
    assert decision.access == "delegated"
    assert decision.twist_client == logged


# -- what a table needs before evaluating ------------------------------------------

@pytest.mark.parametrize(("line", "client", "server", "ends"), [
    ("ALL: 10.0.0.5", False, False, False),
    ("ALL: .example.com", True, False, False),
    ("ALL: 10.0.0.5: spawn echo %a %d %h %c %u", False, False, False),
    ("ALL: 10.0.0.5: spawn echo %n", True, False, False),
    ("ALL: 10.0.0.5: spawn echo %A", False, False, True),
    ("ALL: 10.0.0.5: spawn echo %r", False, False, True),
    ("ALL: 10.0.0.5: spawn echo %H %s", False, False, True),
    ("ALL: 10.0.0.5: spawn echo %N", False, True, True),
    ("in.ftpd@127.0.0.1: ALL", False, False, True),
    ("in.ftpd@localhost: ALL", False, True, True),
    ("in.ftpd@KNOWN: ALL", False, True, True),
    # A /file's words may be names: that is decided per request (below).
    ("ALL: /etc/hosts.evil", False, False, False),
    ("ALL: ALL EXCEPT /etc/hosts.good", False, False, False),
    ("in.ftpd@/etc/servers: ALL", False, False, True),
    ("ALL: ALL: banners /etc/banners", False, False, True),
    ("ALL: ALL: severity auth.info", False, False, False),
])
def test_table_needs(line: str, client: bool, server: bool, ends: bool) -> None:
    table = parse_table(line + "\n", "hosts.allow")
    assert (table.client_names, table.server_names, table.endpoints) == (client, server, ends)


def test_table_lists_its_file_patterns_with_the_rules_naming_them() -> None:
    table = parse_table("ALL: ALL EXCEPT /etc/hosts.good\n"
                        "in.ftpd@/etc/servers: joe@/etc/hosts.joe\n",
                        "hosts.allow", "/etc/hosts.allow")
    assert table.client_files == (("/etc/hosts.good", "/etc/hosts.allow, line 1"),
                                  ("/etc/hosts.joe", "/etc/hosts.allow, line 2"))
    assert table.server_files == (("/etc/servers", "/etc/hosts.allow, line 2"),)


@pytest.mark.parametrize(("words", "needs"), [
    ("10.0.0.5 10.0.0.0/255.0.0.0 [::1] 192.168.", False),
    ("", False),
    ("10.0.0.5 bad.example", True),
    ("@trusted", True),
    ("KNOWN", True),
    ("LOCAL", True),
    (".example.com", True),
    ("/lists/names", True),         # a file within the file
    ("/lists/addresses", False),
    ("/lists/missing", False),
    ("/lists/self", False),         # lists itself: matches nothing
])
def test_a_file_needs_names_only_when_a_word_of_it_does(words: str, needs: bool) -> None:
    files = {"/list": words, "/lists/names": "10.0.0.7\nhost.example\n",
             "/lists/addresses": "10.0.0.7\n", "/lists/self": "/lists/self\n"}
    lookups = Lookups(read_file=files.get)
    assert files_need_names([("/list", "/etc/hosts.allow, line 1")], lookups) is needs


def test_a_request_reads_each_file_once_for_its_lookup_and_its_verdict() -> None:
    reads: list[str] = []
    contents = iter(["10.0.0.5\n", "bad.example\n"])

    def read(path: str) -> str:
        reads.append(path)
        return next(contents)

    lookups = Lookups(read_file=read).for_request()
    assert not files_need_names([("/list", "")], lookups)
    allow = parse_table("ALL: /list\n", "hosts.allow")
    decision = evaluate(allow, parse_table("ALL: ALL\n", "hosts.deny"),
                        request(client=Endpoint("10.0.0.5")), lookups)
    assert decision.access == "granted"
    assert reads == ["/list"]


def test_files_listing_each_other_are_each_read_once_per_pattern() -> None:
    # Eight files, each listing an address and all eight: read once per path through
    # them, they cost tens of thousands of reads (exponentially more with each file),
    # all in the daemon's loop. Each is read once, and the client still matches.
    paths = [f"/lists/{i}" for i in range(8)]
    reads: list[str] = []

    def read(path: str) -> str:
        reads.append(path)
        return f"10.9.9.{paths.index(path)} " + " ".join(paths) + "\n"

    lookups = Lookups(read_file=read)
    assert not files_need_names([(paths[0], "")], lookups)
    assert sorted(reads) == paths
    reads.clear()
    assert not host_match(paths[0], Endpoint("10.0.0.5"), lookups)
    assert sorted(reads) == paths
    reads.clear()
    assert host_match(paths[0], Endpoint("10.9.9.7"), lookups)
    assert len(reads) == len(set(reads))


# -- aclexec -------------------------------------------------------------------------

def test_aclexec_in_allow_falls_back_to_hosts_deny() -> None:
    decision = decide("ALL: ALL: aclexec check %a\nALL: ALL: deny\n", "ALL: 10.0.0.5\n",
                      request())
    assert decision.access == "granted" and decision.matched == "hosts.allow line 1"
    assert decision.aclexec == ("check 10.0.0.5",)
    # On failure the rest of hosts.allow is skipped (line 2 would deny): hosts.deny decides.
    assert decision.otherwise is not None
    assert decision.otherwise.access == "denied"
    assert decision.otherwise.matched == "hosts.deny line 1"


def test_aclexec_in_allow_without_deny_match_grants() -> None:
    decision = decide("ALL: ALL: aclexec check\n", "", request())
    assert decision.otherwise == Decision("granted")


def test_aclexec_in_deny_grants_on_failure() -> None:
    decision = decide("", "ALL: ALL: aclexec listed %a\n", request())
    assert decision.access == "denied"
    assert decision.otherwise == Decision("granted")


def test_aclexec_fallback_may_run_its_own_check() -> None:
    decision = decide("ALL: ALL: aclexec one\n", "ALL: ALL: aclexec two\n", request())
    assert decision.otherwise is not None
    assert decision.otherwise.aclexec == ("two",)
    assert decision.otherwise.otherwise == Decision("granted")


def test_several_aclexec_commands_run_in_order() -> None:
    decision = decide("ALL: ALL: aclexec one: spawn s: aclexec two\n", "", request())
    assert decision.aclexec == ("one", "two")
    assert decision.spawn == ("s",)


@pytest.mark.parametrize("ending", ["allow", "deny", "twist echo hi"])
def test_aclexec_before_a_terminal_option_does_not_decide(ending: str) -> None:
    decision = decide(f"ALL: ALL: aclexec one: {ending}\n", "", request())
    assert decision.aclexec == () and decision.otherwise is None
    assert decision.spawn == ("one",)           # still run, for its side effects


def test_aclexec_then_an_option_error_denies() -> None:
    decision = decide("ALL: ALL: aclexec one: bogus\n", "", request())
    assert decision.access == "denied" and decision.aclexec == ()
    assert decision.spawn == ("one",)


def test_tcpdmatch_prediction_has_no_fallback() -> None:
    decision = decide("ALL: ALL: aclexec /bin/false\n", "ALL: ALL\n", request(),
                      serving=False)
    assert decision.access == "granted" and decision.otherwise is None


# -- severity and the other checked values -------------------------------------------

@pytest.mark.parametrize(("value", "level"), [
    ("info", "info"), ("WARNING", "warning"), ("auth.warning", "warning"),
    ("Auth.Info", "info"), ("local7.emerg", "emerg"), ("kern.debug", "debug"),
    ("err", "err"),
    ("error", None), ("warn", None), ("panic", None), ("3", None), ("bogus", None),
    ("authpriv.info", None), ("ftp.info", None), (".info", None), ("auth.", None),
])
def test_severity_values(value: str, level: str | None) -> None:
    option = parse_option(f"severity {value}", False, "hosts.allow, line 1")
    assert option.level == level
    assert (option.error is None) == (level is not None)
    if level is None:
        assert option.error == \
            f'hosts.allow, line 1: bad syslog facility or severity: "{value}"'


def test_severity_reaches_the_decision_and_a_bad_one_denies() -> None:
    assert decide("", "ALL: ALL: severity auth.warning\n", request()).severity == "warning"
    bad = decide("ALL: ALL: severity bogus\n", "", request())
    assert bad.access == "denied"
    assert any("bad syslog facility or severity" in line for line in bad.trace)


@pytest.mark.parametrize(("option", "granted"), [
    ("rfc931", True), ("rfc931 10", True), ("rfc931 x", False), ("severity=auth.info", True),
])
def test_values_checked_like_libwrap(option: str, granted: bool) -> None:
    assert decide(f"ALL: ALL: {option}\n", "", request()).granted is granted


@pytest.mark.parametrize(("pattern", "client", "matches"), [
    # A zone is read as getaddrinfo reads it (checked against Debian's libwrap): an
    # interface name for a link-local or link-local multicast address, a decimal index
    # for any address; then only the address is compared, whatever the client's zone.
    ("[fe80::1%lo]", "fe80::1", True),
    ("[ff02::1%lo]", "ff02::1", True),
    ("[fe80::1%2]", "fe80::1", True),
    ("[fe80::1%01]", "fe80::1", True),
    ("[fe80::1%4294967295]", "fe80::1", True),
    ("[2001:db8::1%5]", "2001:db8::1", True),
    ("[::1%0]", "::1", True),
    ("[fe80::1%lo]/64", "fe80::2", True),
    ("[fe80::1%lo]", "fe80::2", False),
    ("[fe80::1%4294967296]", "fe80::1", False),
    ("[fe80::1%no-such-if]/64", "fe80::2", False),
    ("[fe80::1%LO]", "fe80::1", False),
    ("[fe80::1%1x]", "fe80::1", False),
    ("[fe80::1%+1]", "fe80::1", False),
    ("[fe80::1%]", "fe80::1", False),
    ("[2001:db8::1%lo]", "2001:db8::1", False),
    ("[::1%lo]/128", "::1", False),
])
def test_scoped_ipv6_patterns(pattern: str, client: str, matches: bool) -> None:
    decision = decide(f"in.ftpd: {pattern}\n", "ALL: ALL\n",
                      request(client=Endpoint(client)))
    assert decision.access == ("granted" if matches else "denied")
    served = decide(f"in.ftpd@{pattern}: ALL\n", "ALL: ALL\n",
                    request(server=Endpoint(client)))
    assert served.access == decision.access


def test_a_scoped_client_keeps_its_zone_and_matches_without_it() -> None:
    from pyxinetd.access.hostspatterns import wrap_address
    assert wrap_address("fe80::1%eth0") == "fe80::1%eth0"
    assert wrap_address("::ffff:127.0.0.1") == "127.0.0.1"
    assert wrap_address("2001:DB8::1") == "2001:db8::1"
    client = Endpoint(wrap_address("fe80::1%eth0"))
    assert decide("in.ftpd: [fe80::1]\n", "ALL: ALL\n",
                  request(client=client)).access == "granted"
    assert decide("in.ftpd: [fe80::]/64\n", "ALL: ALL\n",
                  request(client=client)).access == "granted"


def test_files_within_files_are_read_as_deep_as_they_go(tmp_path: Path) -> None:
    # Debian's libwrap denies 10.0.0.5 listed six files deep (libwrap_probe.py).
    (tmp_path / "f6").write_text("10.0.0.5\n")
    for i in range(5, 0, -1):
        (tmp_path / f"f{i}").write_text(f"{tmp_path}/f{i + 1}\n")
    client = Endpoint("10.0.0.5")
    assert not decide("", f"ALL: {tmp_path}/f1\n", request(client=client)).granted


def test_a_file_that_lists_itself_still_matches_its_other_words(tmp_path: Path) -> None:
    # libwrap recurses into it until it crashes; here the word matches nothing.
    loop = tmp_path / "loop"
    loop.write_text(f"{loop} 10.0.0.5\n")
    assert not decide("", f"ALL: {loop}\n", request(client=Endpoint("10.0.0.5"))).granted
    assert decide("", f"ALL: {loop}\n", request(client=Endpoint("10.0.0.6"))).granted


def test_unopenable_file_lists_are_remembered_up_to_a_bound(tmp_path: Path) -> None:
    # Tables rewritten again and again to name new unopenable paths: each is warned
    # about once, and what is remembered of them stays bounded.
    warnings: list[str] = []
    lookups = Lookups(on_warning=warnings.append)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    count = MAX_UNOPENABLE_REMEMBERED + 10
    for n in range(count):
        assert lookups.read_list(f"{loop}/{n}") is None
    assert len(warnings) == count
    assert len(lookups._unopenable) <= MAX_UNOPENABLE_REMEMBERED
    # The newest is still remembered: asked again, it is not warned about again.
    assert lookups.read_list(f"{loop}/{count - 1}") is None
    assert len(warnings) == count


# -- rules of other daemons ------------------------------------------------------

@pytest.mark.parametrize(("daemons", "daemon"), [
    ("sshd", "in.ftpd"),
    ("sshd EXCEPT in.ftpd", "in.ftpd"),
    ("EXCEPT in.ftpd", "in.ftpd"),
    ("IN.FTPD.", "in.ftpd"),
    ("*.", "in.ftpd"),
    ("in.f[t]*", "in.ftpd"),
    ("in.ftpd@192.0.2.1", "in.ftpd@192.0.2.1"),
    ("in.ftpd@.example.com", "sshd"),
    ("KNOWN", "unknown"),
])
def test_a_rule_that_cannot_name_the_daemon_never_reads_a_name(daemons: str,
                                                               daemon: str) -> None:
    # Its names are not looked up for the request (TablesView.names, files): its client
    # list must then never be reached, nor a `daemon@host` host part of its list.
    rule = parse_table(f"{daemons}: .example.com\n", "hosts.deny").rules[0]
    assert not rule.may_serve(daemon)
    unnamed = Endpoint("10.0.0.5", not_looked_up="not looked up")
    decision = decide("", f"{daemons}: .example.com\n",
                      request(server=unnamed, client=unnamed, daemon=daemon))
    assert decision.granted and decision.matched is None


@pytest.mark.parametrize(("daemons", "daemon"), [
    ("ALL EXCEPT sshd", "in.ftpd"),
    ("in.ftpd EXCEPT in.ftpd", "in.ftpd"),
    ("IN.FTPD", "in.ftpd"),
    ("in.", "in.ftpd"),
    (".FTPD", "in.ftpd"),
    ("*.", "in.ftpd."),
    ("in.f?pd", "in.ftpd"),
    ("KNOWN", "in.ftpd"),
])
def test_a_rule_that_may_name_the_daemon_has_its_names_looked_up(daemons: str,
                                                                  daemon: str) -> None:
    rule = parse_table(f"{daemons}@.example.com: .example.com\n", "hosts.deny").rules[0]
    assert rule.may_serve(daemon) and rule.client_names and rule.server_names


def test_requests_share_the_text_of_an_unchanged_banner_file(tmp_path: Path) -> None:
    # A parked request keeps the banner text it read until it is sent: requests that
    # read an unchanged file share one copy; a rewritten file is read again.
    banner = tmp_path / "in.test"
    banner.write_bytes(b"hello %a\n")
    lookups = Lookups()
    first = lookups.for_request().banner_text(str(banner))
    second = lookups.for_request().banner_text(str(banner))
    assert first == b"hello %a\n" and second is first
    banner.write_bytes(b"goodbye, longer now\n")
    assert lookups.for_request().banner_text(str(banner)) == b"goodbye, longer now\n"
    banner.unlink()
    assert lookups.for_request().banner_text(str(banner)) is None
