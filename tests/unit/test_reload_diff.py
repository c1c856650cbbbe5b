"""reload.diff(): which services a reload adds, removes, readjusts, and which sockets stay."""

from __future__ import annotations

import socket

import pytest

from pyxinetd.config.model import Origin, SocketType
from pyxinetd.reload import diff, diff_services, is_different, listener_key
from tests.factories import make_config, make_service


def test_identical_configurations_change_nothing() -> None:
    a, b = make_service(name="a", port=1000), make_service(name="b", port=1001)
    plan = diff(make_config(a, b), make_config(make_service(name="a", port=1000),
                                              make_service(name="b", port=1001)))
    assert plan.added == plan.removed == plan.changed == ()
    assert [(c.old, c.new) for c in plan.unchanged] == [(a, a), (b, b)]
    assert all(c.keeps_listener for c in plan.unchanged)


def test_added_and_removed_by_id() -> None:
    old = [make_service(name="a", port=1000), make_service(name="gone", port=1001)]
    new = [make_service(name="a", port=1000), make_service(name="fresh", port=1002)]
    plan = diff_services(old, new)
    assert [s.id for s in plan.removed] == ["gone"]
    assert [s.id for s in plan.added] == ["fresh"]
    assert [c.new.id for c in plan.unchanged] == ["a"]


def test_ids_match_case_insensitively() -> None:
    plan = diff_services([make_service(name="Echo", port=7)], [make_service(name="echo", port=7)])
    assert plan.added == plan.removed == ()
    assert len(plan.changed) == 1 and plan.changed[0].keeps_listener


def test_moving_a_block_in_the_file_is_no_change() -> None:
    old = make_service(name="a", port=1000, origin=Origin("/etc/xinetd.d/a", 3))
    new = make_service(name="a", port=1000, origin=Origin("/etc/xinetd.d/a", 9))
    plan = diff_services([old], [new])
    assert plan.changed == () and len(plan.unchanged) == 1


@pytest.mark.parametrize("overrides", [
    {"server_argv": ("cat", "-u")},
    {"only_from": ()},
    {"instances": 3},
    {"cps": (5, 2)},
    {"user": 65534},
    {"server": "/bin/echo"},
    {"log_on_success": frozenset({"PID"})},
])
def test_attribute_changes_are_readjusted_on_the_same_socket(overrides: dict[str, object]
                                                             ) -> None:
    old = make_service(name="a", port=1000)
    new = make_service(name="a", port=1000, **overrides)
    plan = diff_services([old], [new])
    assert plan.added == plan.removed == plan.unchanged == ()
    assert [(c.old, c.new) for c in plan.changed] == [(old, new)]
    assert plan.changed[0].keeps_listener


@pytest.mark.parametrize("overrides", [
    {"port": 1001},
    {"wait": True},
    {"types": frozenset({"UNLISTED", "INTERNAL"})},
    {"types": frozenset()},
    {"socket_type": SocketType.DGRAM},
    {"protocol": "udp", "protocol_number": 17},
])
def test_different_services_are_removed_and_added(overrides: dict[str, object]) -> None:
    old = make_service(name="a", port=1000)
    new = make_service(name="a", **{"port": 1000, **overrides})
    assert is_different(old, new)
    plan = diff_services([old], [new])
    assert plan.removed == (old,) and plan.added == (new,)
    assert plan.changed == plan.unchanged == ()


def test_rpc_services_compare_program_numbers_not_ports() -> None:
    old = make_service(name="r", port=None, types=frozenset({"RPC"}), rpc_number=100000)
    assert not is_different(old, make_service(name="r", port=None, types=frozenset({"RPC"}),
                                              rpc_number=100000, socket_type="dgram", wait=False,
                                              protocol="tcp", protocol_number=6))
    assert is_different(old, make_service(name="r", port=None, types=frozenset({"RPC"}),
                                          rpc_number=100001))


@pytest.mark.parametrize("overrides", [
    {"bind": "127.0.0.2"},
    {"bind": None},
    {"family": socket.AF_INET6, "bind": "::1"},
    {"redirect": ("127.0.0.1", 9)},
])
def test_socket_changes_keep_the_service_but_not_its_listener(overrides: dict[str, object]
                                                              ) -> None:
    old = make_service(name="a", port=1000)
    new = make_service(name="a", port=1000, **overrides)
    plan = diff_services([old], [new])
    assert plan.added == plan.removed == ()
    assert len(plan.changed) == 1 and not plan.changed[0].keeps_listener


@pytest.mark.parametrize("flags", [{"KEEPALIVE"}, {"NODELAY"}, {"INTERCEPT"}])
def test_options_set_on_the_kept_socket_keep_its_listener(flags: set[str]) -> None:
    # As xinetd, which keeps the socket (and the servers holding it) for these:
    # listener.readjust_options sets them on it.
    old = make_service(name="a", port=1000)
    plan = diff_services([old], [make_service(name="a", port=1000, flags=frozenset(flags))])
    assert len(plan.changed) == 1 and plan.changed[0].keeps_listener


def test_v6only_matters_only_for_inet6_listeners() -> None:
    v4 = make_service(name="a", port=1000)
    assert listener_key(v4) == listener_key(make_service(name="a", port=1000, v6only=True))
    v6 = make_service(name="a", port=1000, family=socket.AF_INET6, bind=None)
    assert listener_key(v6) != listener_key(
        make_service(name="a", port=1000, family=socket.AF_INET6, bind=None, v6only=True))


def test_flags_that_do_not_touch_the_socket_keep_it() -> None:
    old = make_service(name="a", port=1000)
    new = make_service(name="a", port=1000, flags=frozenset({"NAMEINARGS", "IPv4"}))
    assert diff_services([old], [new]).changed[0].keeps_listener


def test_duplicate_ids_pair_up_by_listener() -> None:
    old = [make_service(name="d", port=1000), make_service(name="d", port=1001)]
    new = [make_service(name="d", port=1001, server_argv=("cat", "x")),
           make_service(name="d", port=1000)]
    plan = diff_services(old, new)
    assert plan.added == plan.removed == ()
    pairs = {(c.old.port, c.new.port) for c in plan.kept}
    assert pairs == {(1000, 1000), (1001, 1001)}


def test_equal_duplicates_each_match_once() -> None:
    twin = make_service(name="d", port=1000)
    other = make_service(name="d", port=1000)
    plan = diff_services([twin], [twin, other])
    assert len(plan.unchanged) == 1 and plan.unchanged[0].new is twin
    assert plan.added == (other,) and plan.added[0] is other


def test_every_service_appears_once() -> None:
    old = [make_service(name=n, port=p) for n, p in (("a", 1), ("b", 2), ("c", 3))]
    new = [make_service(name="a", port=1), make_service(name="b", port=5),
           make_service(name="c", port=3, instances=2), make_service(name="d", port=4)]
    plan = diff_services(old, new)
    olds = list(plan.removed) + [c.old for c in plan.kept]
    news = list(plan.added) + [c.new for c in plan.kept]
    assert sorted(map(id, olds)) == sorted(map(id, old))
    assert sorted(map(id, news)) == sorted(map(id, new))


def test_services_match_by_id_whatever_their_order_and_case_one_comparison_each(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The new services are found by id (an index: a scan of every new one for each old
    # one stalled the loop half a minute for 19,000), each compared once.
    from pyxinetd import reload
    calls = []
    monkeypatch.setattr(reload, "is_different",
                        lambda old, new: calls.append(1) or is_different(old, new))
    old = [make_service(name=f"s{i}", port=10000 + i) for i in range(300)]
    new = [make_service(name=f"S{i}", port=10000 + i) for i in range(299, -1, -1)]
    new.append(make_service(name="added", port=9999))
    plan = diff_services(old, new)
    assert len(plan.unchanged) + len(plan.changed) == 300
    assert [s.id for s in plan.added] == ["added"] and not plan.removed
    assert len(calls) == 300
