"""The resolver helper's lookup pool (pyxinetd.access.lookups.LookupPool), driven with a
lookup function that blocks until the test releases it, in place of a slow DNS."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pyxinetd.access.lookups import (
    DEFAULT_THREADS, MAX_THREADS, LookupPool, NameInfo, lookup_threads,
    network_of)

WAIT = 10.0   # bound of every wait below; none is reached when the pool works


class SlowDns:
    """Lookups that block until released; counts them and how many ran at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.asked: list[str] = []
        self.running = 0
        self.most_at_once = 0

    def __call__(self, address: str, wanted: Callable[[], bool]) -> NameInfo:
        with self.lock:
            self.asked.append(address)
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        self.release.wait(WAIT)
        with self.lock:
            self.running -= 1
        return NameInfo(f"host-{address}.test", True)


class Answers:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: dict[int, NameInfo] = {}

    def __call__(self, request_id: int, info: NameInfo) -> None:
        with self.lock:
            self.got[request_id] = info

    def count(self) -> int:
        with self.lock:
            return len(self.got)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.01)


def later() -> float:
    return time.monotonic() + 3600


def test_a_burst_of_distinct_addresses_is_looked_up_at_once() -> None:
    dns, answers = SlowDns(), Answers()
    pool = LookupPool(answers, max_threads=32, resolve=dns)
    try:
        for n in range(20):
            pool.ask(n, f"10.{n}.0.1", later())
        # All 20 lookups are under way together (the old pool ran 4).
        wait_until(lambda: dns.running == 20, "20 lookups running together")
        dns.release.set()
        wait_until(lambda: answers.count() == 20, "20 answers")
    finally:
        pool.close()
    assert answers.got[7] == NameInfo("host-10.7.0.1.test", True)
    assert sorted(dns.asked) == sorted(f"10.{n}.0.1" for n in range(20))


def test_the_pool_never_grows_past_its_bound() -> None:
    # Past it only for a network with nothing under way (below): here two networks,
    # each the share of half the bound.
    dns, answers = SlowDns(), Answers()
    pool = LookupPool(answers, max_threads=10, resolve=dns)
    try:
        for n in range(30):
            pool.ask(n, f"10.{n % 2}.0.{n}", later())
        wait_until(lambda: dns.running == 10, "10 lookups running")
        time.sleep(0.1)
        assert pool.threads == 10
        dns.release.set()
        wait_until(lambda: answers.count() == 30, "30 answers")
    finally:
        pool.close()
    assert dns.most_at_once == 10
    assert len(dns.asked) == 30


def test_one_address_asked_by_many_is_one_lookup_answered_to_all() -> None:
    dns, answers = SlowDns(), Answers()
    pool = LookupPool(answers, max_threads=32, resolve=dns)
    try:
        for n in range(20):
            pool.ask(n, "192.0.2.9", later())
            if n == 0:
                # Some ask while it is queued, the others while it is under way.
                wait_until(lambda: dns.running == 1, "the lookup to start")
        dns.release.set()
        wait_until(lambda: answers.count() == 20, "20 answers")
        assert dns.asked == ["192.0.2.9"]
        # Once answered, the next request for it is a new lookup.
        pool.ask(20, "192.0.2.9", later())
        wait_until(lambda: answers.count() == 21, "the 21st answer")
    finally:
        pool.close()
    assert dns.asked == ["192.0.2.9"] * 2
    assert set(answers.got.values()) == {NameInfo("host-192.0.2.9.test", True)}


def test_lookups_nobody_waits_for_any_more_are_not_made() -> None:
    dns, answers = SlowDns(), Answers()
    pool = LookupPool(answers, max_threads=1, resolve=dns)
    try:
        pool.ask(0, "192.0.2.1", later())
        wait_until(lambda: dns.running == 1, "the first lookup")
        # Queued behind it, their deadlines pass before the one thread is free.
        soon = time.monotonic() + 0.2
        for n in range(1, 10):
            pool.ask(n, f"192.0.2.{n + 1}", soon)
        wait_until(lambda: time.monotonic() > soon, "the deadline")
        pool.ask(10, "192.0.2.50", later())
        dns.release.set()
        wait_until(lambda: answers.count() == 2, "two answers")
        wait_until(lambda: pool.threads == 1 and dns.running == 0, "an idle pool")
    finally:
        pool.close()
    assert dns.asked == ["192.0.2.1", "192.0.2.50"]
    assert set(answers.got) == {0, 10}


def test_an_answer_after_the_deadline_goes_to_nobody() -> None:
    dns, answers = SlowDns(), Answers()
    pool = LookupPool(answers, max_threads=4, resolve=dns)
    try:
        soon = time.monotonic() + 0.2
        pool.ask(0, "192.0.2.1", soon)
        pool.ask(1, "192.0.2.1", later())   # joins it, waits longer
        pool.ask(2, "192.0.2.2", soon)
        wait_until(lambda: dns.running == 2, "two lookups")
        wait_until(lambda: time.monotonic() > soon, "the deadline")
        dns.release.set()
        wait_until(lambda: answers.count() == 1, "one answer")
        wait_until(lambda: dns.running == 0, "the lookups to end")
    finally:
        pool.close()
    assert set(answers.got) == {1}


def test_the_forward_confirmation_is_skipped_once_nobody_waits() -> None:
    seen: list[bool] = []
    done = threading.Event()

    def lookup(address: str, wanted: Callable[[], bool]) -> NameInfo:
        time.sleep(0.3)
        seen.append(wanted())
        done.set()
        return NameInfo("late.test", False)

    answers = Answers()
    pool = LookupPool(answers, max_threads=2, resolve=lookup)
    try:
        pool.ask(0, "192.0.2.1", time.monotonic() + 0.05)
        assert done.wait(WAIT)
    finally:
        pool.close()
    assert seen == [False]


def test_idle_threads_end() -> None:
    dns, answers = SlowDns(), Answers()
    dns.release.set()
    pool = LookupPool(answers, max_threads=8, resolve=dns, idle=0.05)
    try:
        for n in range(8):
            pool.ask(n, f"10.{n}.0.1", later())
        wait_until(lambda: answers.count() == 8, "8 answers")
        wait_until(lambda: pool.threads == 0, "the threads to end")
        pool.ask(8, "192.0.2.8", later())
        wait_until(lambda: answers.count() == 9, "an answer from a new thread")
    finally:
        pool.close()


@pytest.mark.parametrize("attacker", ["203.0.113.{n}", "::ffff:203.0.113.{n}",
                                      "2001:db8:0:7::{n:x}"])
def test_one_client_network_cannot_take_every_thread(attacker: str) -> None:
    # Reverse lookups that never answer, from many addresses of one network: they take
    # half the threads, and a client of another network is looked up at once.
    dns, answers = SlowDns(), Answers()
    pool = LookupPool(answers, max_threads=8, resolve=dns)
    try:
        for n in range(1, 21):
            pool.ask(n, attacker.format(n=n), later())
        wait_until(lambda: dns.running == 4, "the network's lookups")
        time.sleep(0.1)
        assert dns.running == 4
        pool.ask(0, "198.51.100.7", later())
        wait_until(lambda: "198.51.100.7" in dns.asked, "the other network's lookup")
        dns.release.set()
        wait_until(lambda: answers.count() == 21, "21 answers")
    finally:
        pool.close()
    assert dns.most_at_once == 4 + 1
    assert len(dns.asked) == 21


def test_a_client_of_a_network_with_nothing_in_flight_never_waits_for_threads() -> None:
    # Two networks' unanswered lookups hold every thread of the bound (half each):
    # a client of a third network gets one more thread at once.
    dns, answers = SlowDns(), Answers()
    pool = LookupPool(answers, max_threads=8, resolve=dns)
    try:
        for n in range(1, 11):
            pool.ask(n, f"203.0.113.{n}", later())
            pool.ask(100 + n, f"198.18.0.{n}", later())
        wait_until(lambda: dns.running == 8, "both networks' lookups")
        pool.ask(0, "192.0.2.7", later())
        wait_until(lambda: "192.0.2.7" in dns.asked, "the third network's lookup")
        assert pool.threads == 9
        dns.release.set()
        wait_until(lambda: answers.count() == 21, "21 answers")
    finally:
        pool.close()


def test_threads_stuck_in_lookups_nobody_waits_for_do_not_count() -> None:
    # Two lookups outlive their deadlines (the DNS answers after the master gave up):
    # a new client is looked up all the same, on a third thread past the bound of two.
    dns, answers = SlowDns(), Answers()
    pool = LookupPool(answers, max_threads=2, resolve=dns)
    try:
        soon = time.monotonic() + 0.2
        pool.ask(0, "10.1.0.1", soon)
        pool.ask(1, "10.2.0.1", soon)
        wait_until(lambda: dns.running == 2, "two lookups")
        wait_until(lambda: time.monotonic() > soon, "their deadline")
        pool.ask(2, "10.3.0.1", later())
        wait_until(lambda: dns.running == 3, "a third lookup")
        assert pool.threads == 3
        dns.release.set()
        wait_until(lambda: answers.count() == 1, "the live one's answer")
    finally:
        pool.close()
    assert set(answers.got) == {2}


@pytest.mark.parametrize(("address", "network"), [
    ("192.0.2.77", "192.0.2.0/24"), ("::ffff:192.0.2.77", "192.0.2.0/24"),
    ("2001:db8:1:2:3::4", "2001:db8:1::/56"), ("2001:db8:1:1ff::1", "2001:db8:1:100::/56"),
    ("fe80::1%eth0", "fe80::/56"),
    ("not an address", "not an address")])
def test_the_network_an_address_counts_against(address: str, network: str) -> None:
    assert network_of(address) == network


@pytest.mark.parametrize(("value", "threads"), [
    (None, DEFAULT_THREADS), ("64", 64), ("1", 1), ("0", DEFAULT_THREADS),
    ("-3", DEFAULT_THREADS), ("many", DEFAULT_THREADS), ("100000", MAX_THREADS)])
def test_the_bound_comes_from_the_environment(value: str | None, threads: int) -> None:
    environ = {} if value is None else {"PYXINETD_LOOKUP_THREADS": value}
    assert lookup_threads(environ) == threads


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="a private /etc/hosts needs root and unshare")
def test_an_alias_whose_canonical_name_is_not_utf8_is_paranoid(tmp_path: Path) -> None:
    # libwrap compares the bytes: the canonical name Python cannot decode must still
    # be told from the reverse name (it once skipped the test, confirming the alias).
    hosts = tmp_path / "hosts"
    hosts.write_bytes(b"127.0.0.6 caf\xe9.test shared.test\n127.0.0.1 shared.test\n"
                      b"127.0.0.9 caf\xe9.test\n")
    script = ("import sys\nfrom pyxinetd.access.lookups import resolve\n"
              "print(resolve('127.0.0.1').confirmed, resolve('127.0.0.9').confirmed)\n")
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", f'mount --bind "$1" /etc/hosts && exec "$2" -c "$3"',
         "sh", str(hosts), sys.executable, script],
        capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.split() == ["False", "True"], done
