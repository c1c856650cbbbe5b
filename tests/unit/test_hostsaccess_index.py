"""The indexed scan of large tables (hoststables.scan_plan: the rules that may serve a
daemon, runs of address-only rules looked up by the client's address) gives the same
decision as testing every rule in turn, on generated tables that mix fail2ban's and
DenyHosts' lines with every other kind of rule."""

from __future__ import annotations

import random

import pytest

from pyxinetd.access import hoststables
from pyxinetd.access.hostsaccess import evaluate, parse_table
from pyxinetd.access.hostspatterns import Endpoint, Lookups, Request

ADDRESSES = [f"192.0.2.{n}" for n in range(1, 13)] + ["10.0.0.1", "127.0.0.1"]
DAEMONS = ["sshd", "in.echo", "in.telnetd", "vsftpd"]


def _rule(rng: random.Random) -> str:
    kind = rng.random()
    addresses = " ".join(rng.sample(ADDRESSES, rng.choice([1, 1, 1, 2, 3])))
    if kind < 0.45:
        return f"ALL: {addresses}"                              # fail2ban
    if kind < 0.7:
        return f"{rng.choice(DAEMONS)}: {addresses}"            # DenyHosts
    if kind < 0.72:
        return f"{rng.choice(DAEMONS)}: {addresses}: {rng.choice(['allow', 'deny'])}"
    if kind < 0.75:
        # Options that need a name: the run of address rules still tells it.
        return f"ALL: {addresses}: spawn echo {rng.choice(['%n', '%N', '%a'])}"
    if kind < 0.8:
        return f"ALL EXCEPT {rng.choice(DAEMONS)}: {addresses}"
    if kind < 0.85:
        return f"ALL: 192.0.2. EXCEPT {rng.choice(ADDRESSES)}"  # prefix, not literal
    if kind < 0.9:
        return f"{rng.choice(DAEMONS)}: {rng.choice(ADDRESSES)}/255.255.255.252"
    if kind < 0.95:
        return f"in.echo@127.0.0.1: {addresses}"                # reads the server
    return f"ALL: [::1] {addresses}"


def _table(rng: random.Random, label: str) -> str:
    return "".join(_rule(rng) + "\n" for _ in range(rng.randint(0, 60)))


CLIENTS = ADDRESSES + ["::ffff:192.0.2.3", "::1", "2001:db8::1", None]


@pytest.mark.parametrize("seed", range(40))
def test_indexed_scan_decides_as_the_rule_by_rule_scan(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    allow_text, deny_text = _table(rng, "hosts.allow"), _table(rng, "hosts.deny")
    requests = [Request(daemon=rng.choice(DAEMONS), client=Endpoint(address=client),
                        server=Endpoint(address="127.0.0.1"))
                for client in CLIENTS for _ in range(2)]

    def decisions() -> list[object]:
        allow = parse_table(allow_text, "hosts.allow")
        deny = parse_table(deny_text, "hosts.deny")
        view = hoststables._view(allow, deny)
        # What a request waits for (names, /file lists) comes from the same plans.
        return ([evaluate(allow, deny, r, Lookups(), serving=False) for r in requests]
                + [(view.names(d), view.files(d)) for d in DAEMONS])
    indexed = decisions()
    monkeypatch.setattr(hoststables, "LITERAL_RUN_MIN", 10**9)
    monkeypatch.setattr(hoststables.Rule, "may_serve", lambda self, daemon: True)
    assert decisions() == indexed


def test_a_long_run_of_address_rules_is_indexed() -> None:
    text = "".join(f"ALL: 198.51.100.{n}\n" for n in range(200)) + "sshd: ALL\n"
    plan = parse_table(text, "hosts.deny").plan_for("in.echo")
    assert len(plan) == 1 and isinstance(plan[0], hoststables.LiteralRun)
    assert [r.line for r in plan[0].candidates("198.51.100.7")] == [8]


def test_a_run_of_address_rules_needs_a_name_only_for_the_daemons_its_options_serve() -> None:
    # One `sshd: ADDRESS: spawn ... %n` rule among address rules made every other
    # service's client wait for its reverse name (5 s with the DNS down).
    text = ("".join(f"ALL: 198.51.100.{n}\n" for n in range(20))
            + "sshd: 198.51.100.77: spawn echo %n\n")
    view = hoststables._view(parse_table("", "hosts.allow"), parse_table(text, "hosts.deny"))
    assert view.names("in.echo") == (False, False)
    assert view.names("sshd") == (True, False)

