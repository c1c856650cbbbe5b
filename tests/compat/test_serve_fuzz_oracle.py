"""A small seeded run of scripts/diff-fuzz-serve: random services and clients served
by pyxinetd and by the real xinetd 2.3.15.3 must give the clients the same bytes and
write the same service log lines, but for the documented deviations the script knows.
"""

from __future__ import annotations

import random
from pathlib import Path
from types import ModuleType

import pytest

from tests.daemon import namespace_problem
from tests.oracle import require_xinetd
from tests.scripts import load_script

pytestmark = pytest.mark.skipif(namespace_problem("ip") is not None,
                                reason=str(namespace_problem("ip")))


def fuzzer() -> ModuleType:
    return load_script("diff-fuzz-serve")


def test_seeded_services_are_served_as_xinetd_serves_them(tmp_path: Path) -> None:
    xinetd = require_xinetd()
    fuzz = fuzzer()
    rng = random.Random(7)
    batch = [fuzz.make_service(rng, n) for n in range(6)]
    x, p = fuzz.run_batch(batch, tmp_path, xinetd)
    assert fuzz.differences(batch, x, p) == []
    # Something was served: a comparison of two silent runs proves nothing.
    assert any(x[svc["id"]]["log"] for svc in batch)


def service(body: str, files: dict[str, str], kind: str = "report") -> dict[str, object]:
    return {"id": "fz1", "name": "fz1", "kind": kind, "dgram": False, "unread": False,
            "body": "".join(f"\t{line}\n" for line in body.splitlines()), "files": files,
            "waves": [[{"src": "127.0.0.1", "data": "", "half_close": False}]]}


BANNERED = {"fz1.banner_success": "banner_success of fz1\n"}


def test_a_nobody_services_banner_success_xinetd_cannot_read_is_no_difference() -> None:
    fuzz = fuzzer()
    svc = service("user = nobody\nbanner_success = {W}/fz1.banner_success", BANNERED)
    x = {"fz1": {"clients": ["b'served' EOF"], "log": ["START: fz1"]}}
    p = {"fz1": {"clients": ["b'banner_success of fz1\\nserved' EOF"], "log": ["START: fz1"]}}
    assert fuzz.differences([svc], x, p) == []


def test_a_root_services_missing_banner_success_is_a_difference() -> None:
    fuzz = fuzzer()
    svc = service("user = root\nbanner_success = {W}/fz1.banner_success", BANNERED)
    x = {"fz1": {"clients": ["b'served' EOF"], "log": ["START: fz1"]}}
    p = {"fz1": {"clients": ["b'banner_success of fz1\\nserved' EOF"], "log": ["START: fz1"]}}
    assert len(fuzz.differences([svc], x, p)) == 1


def test_banners_of_a_stream_wait_service_are_a_known_deviation() -> None:
    fuzz = fuzzer()
    svc = service("wait = yes\nper_source = 1\nbanner = {W}/fz1.banner",
                  {"fz1.banner": "banner of fz1\n"}, kind="wait-stream")
    x = {"fz1": {"clients": ["connect ConnectionRefusedError"],
                 "log": ["EXIT: fz1 signal=13", "START: fz1 from=<no address>"]}}
    p = {"fz1": {"clients": ["b'[]\\n' EOF"],
                 "log": ["EXIT: fz1 status=0", "START: fz1 from=<no address>"]}}
    assert fuzz.differences([svc], x, p) == []
    plain = service("wait = yes\nper_source = 1", {}, kind="wait-stream")
    assert len(fuzz.differences([plain], x, p)) == 1


def test_clients_of_servers_that_never_read_send_nothing() -> None:
    # Their bytes would make the server's exit reset the connection and throw away the
    # reply Nagle still held behind an unacknowledged banner: a race, not a difference.
    fuzz = fuzzer()
    rng = random.Random(4)
    cases = [fuzz.make_service(rng, n) for n in range(100)]
    unread = [svc for svc in cases if svc["kind"] in fuzz.UNREAD]
    assert unread and cases[65]["kind"] == "report"
    assert all(c["data"] == "" for svc in unread for wave in svc["waves"] for c in wave)
    assert any(c["data"] for svc in cases if svc["kind"] not in fuzz.UNREAD
               for wave in svc["waves"] for c in wave)


def test_wide_draws_keep_plain_seeds_and_reach_every_wide_kind() -> None:
    fuzz = fuzzer()
    wide = [fuzz.make_wide(random.Random(f"5/{n}"), n) for n in range(60)]
    assert {svc["kind"].split("-")[0] for svc in wide} >= {
        "chargen", "daytime", "time", "tcpmux", "ipv6", "wrap"}
    assert any("::1" in c["src"] for svc in wide for w in svc["waves"] for c in w)
    assert any("twist" in svc.get("allow", "") for svc in wide)
    rng = random.Random(4)
    assert [fuzz.make_service(rng, n) for n in range(100)][65]["kind"] == "report"


def test_tcpmux_nul_and_help_answers_are_no_difference() -> None:
    fuzz = fuzzer()
    svc = {**service("type = TCPMUXPLUS UNLISTED", {}), "via": "tcpmux",
           "waves": [[{"src": "127.0.0.1", "data": b"nosuch\r\n".hex(), "half_close": False},
                      {"src": "127.0.0.2", "data": b"help\r\n".hex(), "half_close": False}]]}
    x = {"fz1": {"clients": ["b'-Service name not found\\r\\n\\x00' EOF",
                             "b'-Service name not found\\r\\n\\x00' EOF"], "log": []}}
    p = {"fz1": {"clients": ["b'-Service name not found\\r\\n' EOF", "b'+fz1\\r\\n' EOF"],
                 "log": []}}
    assert fuzz.differences([svc], x, p) == []
    p["fz1"]["clients"][0] = "b'+Go\\r\\n' EOF"
    assert len(fuzz.differences([svc], x, p)) == 1


def test_a_libwrap_refusal_xinetd_forks_first_is_no_difference() -> None:
    fuzz = fuzzer()
    svc = {**service("libwrap = in.w1", {}), "allow": "", "deny": "in.w1 : ALL\n"}
    x = {"fz1": {"clients": ["b'' EOF"],
                 "log": ["EXIT: fz1 status=0", "FAIL: fz1 libwrap", "START: fz1"]}}
    p = {"fz1": {"clients": ["b'' EOF"], "log": ["FAIL: fz1 libwrap"]}}
    assert fuzz.differences([svc], x, p) == []
    p["fz1"]["clients"] = ["b'served' EOF"]
    assert len(fuzz.differences([svc], x, p)) == 1


def test_a_forked_chargen_killed_by_sigpipe_is_no_difference() -> None:
    fuzz = fuzzer()
    svc = {**service("type = INTERNAL UNLISTED", {}, kind="chargen"), "name": "chargen"}
    x = {"fz1": {"clients": ["b'!' prefix"], "log": ["EXIT: fz1 signal=13", "START: fz1"]}}
    p = {"fz1": {"clients": ["b'!' prefix"], "log": ["EXIT: fz1 status=0", "START: fz1"]}}
    assert fuzz.differences([svc], x, p) == []
    assert len(fuzz.differences([{**svc, "name": "echo", "kind": "echo"}], x, p)) == 1


def test_a_twist_xinetd_refuses_after_a_resident_check_is_no_difference() -> None:
    fuzz = fuzzer()
    svc = {**service("libwrap = in.w2", {}), "id": "fz2", "allow":
           "in.w2 : 127.0.0.1 : twist /bin/echo twisted %d %a\n", "deny": ""}
    daytime = {**service("type = INTERNAL UNLISTED", {}, kind="daytime"), "name": "daytime"}
    x = {"fz1": {}, "fz2": {"clients": ["b'' EOF"], "log": ["FAIL: fz2 libwrap", "START: fz2"]}}
    p = {"fz1": {}, "fz2": {"clients": ["b'twisted in.w2 127.0.0.1\\n' EOF"],
                            "log": ["START: fz2"]}}
    assert fuzz.differences([daytime, svc], x, p) == []
    # Before any request was checked in xinetd's own process, its twist runs too.
    assert len(fuzz.differences([svc, daytime], x, p)) == 1


def test_seeded_wide_services_are_served_as_xinetd_serves_them(tmp_path: Path) -> None:
    # A TCPMUX service through tcpmux, IPv6 echo datagrams, chargen datagrams, time.
    xinetd = require_xinetd()
    fuzz = fuzzer()
    batch = [fuzz.make_wide(random.Random(f"1/{n}"), n) for n in range(4)]
    x, p = fuzz.run_batch(batch, tmp_path, xinetd)
    assert fuzz.differences(batch, x, p) == []
    assert all(x[svc["id"]]["clients"] for svc in batch)


def test_seeded_wrapped_services_are_served_as_xinetd_serves_them(tmp_path: Path) -> None:
    # Cases 29 and 27 of `--wide --seed 4`: an echo whose hosts.allow rules twist two of
    # its clients and let the third through, and a NAMEINARGS server whose `ALL : ...
    # : deny` rule refuses one client, with the service's banner_fail.
    xinetd = require_xinetd()
    fuzz = fuzzer()
    batch = [fuzz.make_wide(random.Random(f"4/{n}"), n) for n in (29, 27)]
    x, p = fuzz.run_batch(batch, tmp_path, xinetd)
    assert fuzz.differences(batch, x, p) == []
    assert [c.startswith("b'twisted in.w29 ") for c in x["fz29"]["clients"]] == [
        True, False, True]
    assert x["fz27"]["clients"][1] == "b'banner_fail of fz27\\n' EOF"


def test_a_rule_for_all_judges_every_service_of_the_batch() -> None:
    fuzz = fuzzer()
    chargen = {**service("type = INTERNAL UNLISTED", {}, kind="chargen"), "name": "chargen"}
    wrapped = {**service("libwrap = in.w2", {}), "id": "fz2",
               "allow": "ALL : 127.0.0.1 : deny\n", "deny": ""}
    x = {"fz1": {"clients": ["b'' EOF"], "log": ["EXIT: fz1 status=0", "START: fz1"]},
         "fz2": {}}
    p = {"fz1": {"clients": ["b'' EOF"], "log": []}, "fz2": {}}
    assert fuzz.differences([chargen, wrapped], x, p) == []
    assert len(fuzz.differences([chargen], x, p)) == 1


def test_seeded_shared_daemon_serves_as_xinetd_serves(tmp_path: Path) -> None:
    # Case 16 of `--shared --seed 1`: a redirect and a datagram echo under `-limit 2`,
    # a client refused for the process limit, and a SIGHUP while two are held.
    xinetd = require_xinetd()
    fuzz = fuzzer()
    rng = random.Random("shared 1")
    case = [fuzz.make_shared(rng, n) for n in range(17)][16]
    x, p = fuzz.run_shared(case, tmp_path, xinetd)
    assert fuzz.shared_differences(case, x, p) == []
    log = [line for svc in case["services"] for line in x[svc["id"]]["log"]]
    assert any(line.startswith("FAIL:") and "process_limit" in line for line in log)
    assert any(" | after HUP: " in c for svc in case["services"]
               for c in x[svc["id"]]["clients"])


def test_a_held_builtin_of_a_disabled_service_is_a_known_deviation_only_there() -> None:
    fuzz = fuzzer()
    svc = service("type = INTERNAL UNLISTED\nwait = no", {}, kind="discard")
    x = {"fz1": {"clients": ["b'' open | after HUP-disable: b'' open"], "log": []}}
    p = {"fz1": {"clients": ["b'' open | after HUP-disable: b'' EOF"], "log": []}}
    waves = [{"clients": [], "signal": "HUP-disable", "disable": "fz1"}]
    assert fuzz.shared_differences({"services": [svc], "waves": waves}, x, p) == []
    kept = [{"clients": [], "signal": "HUP"}]
    assert len(fuzz.shared_differences({"services": [svc], "waves": kept}, x, p)) == 1


def test_a_datagram_xinetd_drained_is_a_known_deviation_but_a_wrong_answer_is_not() -> None:
    fuzz = fuzzer()
    svc = service("type = INTERNAL UNLISTED\nsocket_type = dgram\nwait = yes", {},
                  kind="echo-dgram") | {"dgram": True}
    case = {"services": [svc], "waves": [{"clients": [], "signal": None}]}
    x = {"fz1": {"clients": ["b'a\\n'", "TimeoutError"], "log": ["START: fz1"]}}
    p = {"fz1": {"clients": ["b'a\\n'", "b'b\\n'"], "log": ["START: fz1", "START: fz1"]}}
    assert fuzz.shared_differences(case, x, p) == []
    wrong = {"fz1": {"clients": ["b'c\\n'", "b'b\\n'"], "log": ["START: fz1", "START: fz1"]}}
    assert len(fuzz.shared_differences(case, x, wrong)) == 1


def test_a_datagram_service_xinetd_stopped_at_a_refusal_is_excused_only_after_it() -> None:
    fuzz = fuzzer()
    svc = service("type = INTERNAL UNLISTED\nsocket_type = dgram\nwait = yes", {},
                  kind="echo-dgram") | {"dgram": True}
    clients = [{"svc": "fz1", "src": "127.0.0.1", "data": "610a", "half_close": False}]
    case = {"services": [svc], "waves": [{"clients": clients * 3, "signal": None}]}
    fail = "FAIL: fz1 process_limit"
    x = {"fz1": {"clients": ["b'a\\n'", "TimeoutError", "TimeoutError"],
                 "log": [fail, "START: fz1"]}}
    p = {"fz1": {"clients": ["b'a\\n'", "TimeoutError", "b'a\\n'"],
                 "log": [fail, "START: fz1", "START: fz1"]}}
    assert fuzz.shared_differences(case, x, p) == []
    assert fuzz.stopped_at_refusal(case, svc, x["fz1"], p["fz1"])
    # A datagram xinetd left unanswered before any refusal is no stop ...
    early = {"clients": ["TimeoutError", "TimeoutError", "b'a\\n'"],
             "log": [fail, "START: fz1"]}
    assert not fuzz.stopped_at_refusal(case, svc, early, p["fz1"])
    # ... nor one after the reload that resumes xinetd's service.
    waves = [{"clients": clients * 2, "signal": "HUP"}, {"clients": clients, "signal": None}]
    assert not fuzz.stopped_at_refusal({"services": [svc], "waves": waves}, svc,
                                       x["fz1"], p["fz1"])
    # ... nor an answer of xinetd's that pyxinetd's differs from.
    answered = {**x["fz1"], "clients": ["b'a\\n'", "TimeoutError", "b'b\\n'"]}
    assert not fuzz.stopped_at_refusal(case, svc, answered, p["fz1"])


def test_xinetd_is_given_the_host_a_slash_128_entry_means_and_nothing_else() -> None:
    fuzz = fuzzer()
    svc = service("flags = IPv6\nonly_from = ::ffff:127.0.0.1 ::1/128\nno_access = ::1/128",
                  {})
    body = fuzz.as_xinetd_reads(svc)["body"]
    assert "\tonly_from = ::ffff:127.0.0.1 ::1\n" in body and "\tno_access = ::1\n" in body
    assert fuzz.as_xinetd_reads(service("only_from = ::/0", {}))["body"] == "\tonly_from = ::/0\n"


def test_seeded_rare_services_are_served_as_xinetd_serves_them(tmp_path: Path) -> None:
    # Cases 11, 1, 4 and 7 of `--rare --seed 3`: a report server with KEEPALIVE,
    # rlimit_stack = 3m and rlimit_cpu = UNLIMITED; a USERID report
    # server its identd names; an IDONLY echo whose identd answers garbage; datagram
    # senders at once to a wait = yes server.
    xinetd = require_xinetd()
    fuzz = fuzzer()
    batch = [fuzz.make_rare(random.Random(f"rare 3/{n}"), n) for n in (11, 1, 4, 7)]
    x, p = fuzz.run_batch(batch, tmp_path, xinetd)
    assert fuzz.differences(batch, x, p) == []
    assert '"keepalive": 1, "nodelay": 0' in x["fz11"]["clients"][0]
    assert any(line.startswith("USERID: fz1 ") for line in x["fz1"]["log"])
    assert any(line.startswith("NOID: fz4 ") for line in p["fz4"]["log"])
    assert any(c.startswith("b'[") for c in x["fz7"]["clients"])


def test_an_unidentified_idonly_client_is_a_known_deviation_only_as_listed() -> None:
    fuzz = fuzzer()
    svc = service("flags = IDONLY\nlog_on_success = PID EXIT USERID", {})
    p = {"fz1": {"clients": ["b'' EOF"], "log": ["NOID: fz1 127.0.0.1 bad response"]}}
    x = {"fz1": {"clients": ["b'' EOF"], "log": [
        "EXIT: fz1 status=0 pid=N", "NOID: fz1 127.0.0.1 bad response", "START: fz1 pid=N"]}}
    assert fuzz.differences([svc], x, p) == []
    # A START of xinetd's for a client it identified is a difference.
    twice = {"fz1": {**x["fz1"], "log": [*x["fz1"]["log"], "START: fz1 pid=N"]}}
    assert len(fuzz.differences([svc], twice, p)) == 1


def test_seeded_odd_services_are_served_as_xinetd_serves_them(tmp_path: Path) -> None:
    # Cases 0, 1, 4 and 7 of `--odd --seed 2`: a discard with its three banners and
    # refusals, chargen datagrams of 2048 and 1024 bytes and a NUL, a TCPMUX service
    # named with blanks and in another case, a TCPMUXPLUS one with blanks.
    xinetd = require_xinetd()
    fuzz = fuzzer()
    batch = [fuzz.make_odd(random.Random(f"odd 2/{n}"), n) for n in (0, 1, 4, 7)]
    x, p = fuzz.run_batch(batch, tmp_path, xinetd)
    assert fuzz.differences(batch, x, p) == []
    assert all(x[svc["id"]]["clients"] for svc in batch)


def test_odd_draws_keep_the_other_modes_seeds() -> None:
    fuzz = fuzzer()
    odd = [fuzz.make_odd(random.Random(f"odd 5/{n}"), n) for n in range(60)]
    assert {svc["kind"] for svc in odd} >= {"echo-dgram", "tcpmux-odd", "tcpmuxplus-odd",
                                            "banners-daytime"}
    assert any(c["data"] == "" and c["exact"] for svc in odd if svc["dgram"]
               for w in svc["waves"] for c in w)
    rng = random.Random(4)
    assert [fuzz.make_service(rng, n) for n in range(100)][65]["kind"] == "report"


def test_a_datagram_xinetd_drained_after_an_answer_is_known_only_after_one() -> None:
    fuzz = fuzzer()
    svc = service("type = INTERNAL UNLISTED\nsocket_type = dgram\nwait = yes", {},
                  kind="time-dgram") | {"dgram": True, "name": "time"}
    clients = [{"src": "127.0.0.1", "data": "", "half_close": False, "exact": True}] * 2
    svc["waves"] = [clients]
    x = {"fz1": {"clients": ["time4 now", "TimeoutError"], "log": ["START: fz1"]}}
    p = {"fz1": {"clients": ["time4 now", "time4 now"], "log": ["START: fz1"] * 2}}
    assert fuzz.differences([svc], x, p) == []
    # The first datagram of a wave follows no answer: xinetd drained nothing there.
    first = {"fz1": {"clients": ["TimeoutError", "time4 now"], "log": ["START: fz1"]}}
    assert len(fuzz.differences([svc], first, p)) == 1
    # Nor does the drain explain a line more than the datagrams it left unanswered.
    more = {"fz1": {**p["fz1"], "log": ["START: fz1"] * 3}}
    assert len(fuzz.differences([svc], x, more)) == 1


def test_a_stream_chargen_behind_a_drained_chargen_datagram_is_known_only_by_its_lines() -> None:
    # Cases 13 and 19 of `--odd --seed 3`: xinetd drained one of the chargen datagrams
    # pyxinetd answered, so its counter, where the later stream chargen starts, stands
    # 14 lines behind.
    fuzz = fuzzer()
    dgram = service("type = INTERNAL UNLISTED\nsocket_type = dgram\nwait = yes", {},
                    kind="chargen-dgram") | {"id": "fz1", "dgram": True, "name": "chargen"}
    dgram["waves"] = [[{"src": "127.0.0.1", "data": "", "half_close": False,
                        "exact": True}] * 2]
    banner = {"fz2.banner": "banner of fz2\n"}
    stream = service("type = INTERNAL UNLISTED\nbanner = {W}/fz2.banner", banner,
                     kind="banners-chargen") | {"id": "fz2", "name": "chargen"}
    answer = "chargen1024 lines"

    def prefix(first: int) -> str:
        return f"{b'banner of fz2' + bytes([10]) + fuzz.chargen_text(first, 100)!r} prefix"

    x = {"fz1": {"clients": [answer, "TimeoutError"], "log": ["START: fz1"]},
         "fz2": {"clients": [prefix(14)], "log": ["START: fz2"]}}
    p = {"fz1": {"clients": [answer, answer], "log": ["START: fz1"] * 2},
         "fz2": {"clients": [prefix(28)], "log": ["START: fz2"]}}
    assert fuzz.differences([dgram, stream], x, p) == []
    # Without the drain the stream's start is compared as is ...
    whole = {**x, "fz1": p["fz1"]}
    assert len(fuzz.differences([dgram, stream], whole, p)) == 1
    # ... and with it, a start other than 14 lines on is still a difference.
    off = {**p, "fz2": {"clients": [prefix(29)], "log": ["START: fz2"]}}
    assert len(fuzz.differences([dgram, stream], x, off)) == 1
