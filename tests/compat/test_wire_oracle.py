"""What clients of the builtins, tcpmux and the refusal paths see on the wire:
pyxinetd against the real xinetd 2.3.15.3.

The same scenario runs against both daemons at once, each in its own network namespace
(tests/helpers/wire_scenario.py): partial lines, bare CRs, NULs, non-ASCII, a MiB
without a newline, half-closes at once, closes without reading, many requests on one
connection, empty and 64 KiB datagrams, privileged source ports, tcpmux names in every
case and with stray blanks, banners around only_from, instances and per_source
refusals. Every client must see the same bytes and the same end (FIN, reset, or a
connection left open), except for the differences docs/compatibility.md lists, which
are checked here as pyxinetd's side; and no stalled or flooding client may stop the
daemon answering another.
"""

from __future__ import annotations

import concurrent.futures
import sys
from typing import Any

import pytest

from tests.daemon import HELPERS, namespace_problem, run_scenario
from tests.oracle import require_xinetd

SCENARIO = HELPERS / "wire_scenario.py"

pytestmark = pytest.mark.skipif(namespace_problem("ip") is not None,
                                reason=str(namespace_problem("ip")))

Results = tuple[dict[str, Any], dict[str, Any]]

# The client sent bytes the server never reads, and whether they arrive before the
# server closes is a race (xinetd forks for some of these): a reset or a FIN may end
# either daemon's connection, and a reset may cut xinetd's banner short.
RACING = ("refused, sent", "banner, sent", "second, sent", "tcpmux 1 MiB")
# pyxinetd reads what a client sent to daytime or time before it closes, and sends the
# FIN right after the reply; xinetd closes over the unread bytes, a reset.
FIN_AFTER_REPLY = ("daytime sent", "time sent")
# Answered differently on purpose (docs/compatibility.md, internal services).
HELP = ("tcpmux help", "tcpmux HELP")
SPLIT_NAME = "tcpmux CR only"       # pyxinetd waits for the LF of a split CRLF
# A refused TCPMUXPLUS client never gets `+Go` from pyxinetd (xinetd's comes with its
# banner_fail).
REFUSED_PLUS = "tcpmux deniedplus"
# Bytes after the name's CRLF in the same segment: pyxinetd keeps them for the server;
# xinetd's one read does not end in CRLF, and it closes without a reply.
NAME_THEN_MORE = "tcpmux CRLF then more"
# pyxinetd's datagram builtins never answer the well-known ports of the builtins
# (chargen's 19 here): a forged datagram would start a loop between two of them.
LOOP_PORT = ("echo-dgram from port 19", "daytime-dgram from port 19")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    """(xinetd's result, pyxinetd's): the two runs at the same time."""
    root = tmp_path_factory.mktemp("wire")
    xinetd = require_xinetd()
    (root / "x").mkdir()
    (root / "p").mkdir()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        theirs = pool.submit(run_scenario, SCENARIO, root / "x", xinetd)
        ours = pool.submit(run_scenario, SCENARIO, root / "p", sys.executable, "-m",
                           "pyxinetd")
        return theirs.result(), ours.result()


def split(seen: str) -> tuple[str, str]:
    """`<bytes> <end>` -> (bytes, end)."""
    data, end = seen.rsplit(" ", 1)
    return data, end


def without_nul(seen: str) -> str:
    """xinetd's tcpmux replies end in the C string's NUL; pyxinetd's do not."""
    return seen.replace("\\r\\n\\x00", "\\r\\n")


def test_clients_see_what_xinetds_see(results: Results) -> None:
    xinetd, pyxinetd = results
    ours, theirs = pyxinetd["clients"], xinetd["clients"]
    assert ours.keys() == theirs.keys()
    different = {}
    for key, seen in theirs.items():
        if key in HELP or key in (SPLIT_NAME, REFUSED_PLUS, NAME_THEN_MORE) \
                or key in LOOP_PORT:
            continue
        if "tcpmux" in key:
            seen = without_nul(seen)
        if any(racing in key for racing in RACING):
            (data, _), (our_data, _) = split(seen), split(ours[key])
            if not our_data.startswith(data.rstrip("'")):
                different[key] = (seen, ours[key])
            continue
        if key.startswith(FIN_AFTER_REPLY) and "times" not in key:
            seen = seen.replace(" RST", " EOF")
        if ours[key] != seen:
            different[key] = (seen, ours[key])
    assert different == {}


def test_a_reply_is_never_lost_to_unread_input(results: Results) -> None:
    # The reply, then the FIN: input the client sent and nobody read cannot turn the
    # close into a reset that throws the reply away.
    xinetd, pyxinetd = results
    for name in ("daytime", "time"):
        key = f"{name} sent a line, 40 times"
        assert pyxinetd["clients"][key] == xinetd["clients"][key] == "40/40 replies"
        for sent in ("a line", "a partial line", "200 KiB"):
            assert split(pyxinetd["clients"][f"{name} sent {sent}"])[1] == "EOF"


def test_differences_are_the_documented_ones(results: Results) -> None:
    xinetd, pyxinetd = results
    ours, theirs = pyxinetd["clients"], xinetd["clients"]
    assert theirs["tcpmux plus"] == "b'+Go\\r\\n\\x00from plus\\n' EOF"
    assert ours["tcpmux plus"] == "b'+Go\\r\\nfrom plus\\n' EOF"
    for key in HELP:
        assert theirs[key] == "b'-Service name not found\\r\\n\\x00' EOF"
        # The services whose address lists turn this client away are not listed.
        assert ours[key] == "b'plus\\r\\nmux\\r\\ngreeted\\r\\n' EOF"
    assert theirs[SPLIT_NAME] == "b'' EOF"
    for key in LOOP_PORT:
        assert theirs[key] != "no reply"
        assert ours[key] == "no reply"
    assert ours[SPLIT_NAME] == "b'' open"
    # A line ended by a bare LF (`echo plus | nc`) is closed at once by both.
    assert ours["tcpmux LF only"] == theirs["tcpmux LF only"] == "b'' EOF"
    assert split(theirs[NAME_THEN_MORE])[0] == "b''"
    # Served (its end is the server's: /bin/echo closes over the unread `hello`).
    assert split(ours[NAME_THEN_MORE])[0] == "b'+Go\\r\\nfrom plus\\n'"


def test_no_client_stalls_the_daemon(results: Results) -> None:
    xinetd, pyxinetd = results
    assert pyxinetd["serving"] == xinetd["serving"]
    assert all(pyxinetd["serving"].values()), pyxinetd["serving"]
    assert len(pyxinetd["serving"]) == 13


def test_tcpmux_banners_come_in_xinetds_order(results: Results) -> None:
    # The tcpmux service's banner and banner_success, then the reply; a TCPMUX
    # service's own banner_success after `+Go` (its `banner` is not sent); its
    # banner_fail alone, where xinetd sends `+Go` first.
    xinetd, pyxinetd = results
    ours, theirs = pyxinetd["clients"], xinetd["clients"]
    assert ours["b-tcpmux allowed"] == without_nul(theirs["b-tcpmux allowed"]) == (
        "b'<banner>\\n<banner_success>\\n+Go\\r\\nfrom plus\\n' EOF")
    assert ours["b-tcpmux allowed, unknown"] == (
        "b'<banner>\\n<banner_success>\\n-Service name not found\\r\\n' EOF")
    assert ours["tcpmux greeted"] == without_nul(theirs["tcpmux greeted"]) == (
        "b'+Go\\r\\n<banner_success>\\nfrom greeted\\n' EOF")
    assert without_nul(theirs[REFUSED_PLUS]) == "b'+Go\\r\\n<banner_fail>\\n' EOF"
    assert ours[REFUSED_PLUS] == "b'<banner_fail>\\n' EOF"
