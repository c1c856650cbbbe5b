"""A name the access checks never asked for fails closed (docs/access-control.md).

The faulty master (tests/helpers/faulty_master.py, FAULT_AT=names_skipped) makes the gate
answer "no name needed" for one client whatever its rules read: the stand-in for a
wrong choice of names. A pattern, a `%` expansion or an address list that then reads the
client's name must refuse it with an internal-error line naming the service, the client
and the reader, never judge it as `unknown`; other clients are judged as always.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest

from pyxinetd.access.gate import Datagram
from pyxinetd.config.model import AddressEntry, ServiceConfig
from tests.daemon import DaemonFactory, free_port, wait_until
from tests.factories import make_service
from tests.integration.test_connection_fault import FAULTY, GOOD, served, start_faulty
from tests.integration.test_hostsaccess_gate import TIMEOUT, Gate, gate  # noqa: F401


def _tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allow: str, deny: str
            ) -> None:
    (tmp_path / "hosts.allow").write_text(allow)
    (tmp_path / "hosts.deny").write_text(deny)
    monkeypatch.setenv("PYXINETD_HOSTS_ALLOW", str(tmp_path / "hosts.allow"))
    monkeypatch.setenv("PYXINETD_HOSTS_DENY", str(tmp_path / "hosts.deny"))
    monkeypatch.setenv("FAULT_AT", "names_skipped")


def _line(reader: str, address: str = FAULTY) -> str:
    return (rf"internal error in access checks: {reader} read the name of {address}, "
            rf"never asked for: hello from {FAULTY} refused")


def _hello(port: int, **overrides: Any) -> ServiceConfig:
    return make_service(name="hello", port=port, server="/bin/echo",
                        server_argv=("echo", "hello"), libwrap="hello", **overrides)


@pytest.mark.parametrize(("allow", "deny", "reader"), [
    # A deny by name read as `unknown` would be skipped: the client let in.
    ("", "hello: nosuch.invalid\n", "nosuch.invalid"),
    # The same name in a /file list: the word is named with its list.
    ("", "hello: {tmp}/names\n", r"nosuch.invalid \(in {tmp}/names\)"),
    # A later item of the list admits without the name: refused all the same.
    ("hello: nosuch.invalid, {faulty}\n", "hello: ALL\n", "nosuch.invalid"),
    # An expansion of an option reads it.
    ("hello: ALL: setenv NAME %n\n", "", "%n"),
])
def test_a_rule_reading_a_name_never_asked_for_refuses_and_says_so(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch, allow: str, deny: str,
        reader: str) -> None:
    tmp = daemons.tmp_path
    (tmp / "names").write_text("nosuch.invalid\n")
    _tables(tmp, monkeypatch, allow.format(tmp=tmp, faulty=FAULTY),
            deny.format(tmp=tmp, faulty=FAULTY))
    port = free_port()
    daemon = start_faulty(daemons, _hello(port))
    assert served(FAULTY, port) == b""
    daemon.wait_for_log(_line(reader.format(tmp=re.escape(str(tmp)))))


def test_a_client_whose_name_was_asked_for_is_judged_as_always(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    _tables(daemons.tmp_path, monkeypatch, "", "hello: nosuch.invalid\n")
    port = free_port()
    daemon = start_faulty(daemons, _hello(port))
    assert served(GOOD[0], port) == b"hello\n"
    assert "internal error" not in daemon.log()


def test_a_name_in_no_access_never_asked_for_refuses_and_says_so(
        daemons: DaemonFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    _tables(daemons.tmp_path, monkeypatch, "", "")
    port = free_port()
    svc = _hello(port, no_access=(AddressEntry("nosuch.invalid", "host",
                                               name="nosuch.invalid"),))
    daemon = start_faulty(daemons, svc)
    assert served(FAULTY, port) == b""
    daemon.wait_for_log(_line("the only_from/no_access names"))
    assert served(GOOD[0], port) == b"hello\n"


def test_a_datagrams_banner_asking_for_a_name_does_not_trip_the_later_options(
        gate: Gate, tmp_path: Path) -> None:
    # A datagram's banner is not sent and its %n looks nothing up, yet it counts as
    # asking for the name: `%h` after it shows the address, and the request is
    # admitted, never refused as reading a name never asked for.
    banners = tmp_path / "banners"
    banners.mkdir()
    (banners / "in.test").write_text("hello %n\n")
    out = tmp_path / "spawn.out"
    gate.tables(f"in.test: ALL: banners {banners}: spawn echo %h > {out}\n", "")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as service, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        service.bind(("127.0.0.2", 0))
        client.bind(("127.0.0.1", 0))
        client.sendto(b"x", service.getsockname())
        _, sender = service.recvfrom(16)
        verdict, _ = gate.verdict(datagram=Datagram(service, sender), socket_type="dgram",
                                  protocol="udp", port=None, bind="127.0.0.2")
    assert verdict.allowed
    wait_until(lambda: out.exists() and out.read_text().endswith("\n"), TIMEOUT,
               what="the spawn command's output")
    assert out.read_text() == "127.0.0.1\n"
    assert "internal error" not in gate.log.getvalue()
