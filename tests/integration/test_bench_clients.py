"""The benchmark's C client and C reference server (bench/loadclient.c, bench/refserver.c)
do the requests the Python load generator does, and report them so that the same
accounting reads them: real processes on loopback, a fraction of a second of load each.
No rate or latency is asserted, only what was counted."""

from __future__ import annotations

import shutil
import socket
import threading
from array import array
from collections.abc import Iterator

import pytest

from bench import cclient, loadgen
from bench.procs import Janitor
from bench.refserver import reference_server

pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                reason="no C compiler to build the benchmark's C tools")

PAYLOAD = b"hello, bench\n"


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> cclient.CTools:
    built, text = cclient.build(tmp_path_factory.mktemp("ctools"))
    assert built is not None, text
    return built


@pytest.fixture
def janitor() -> Iterator[Janitor]:
    j = Janitor()
    try:
        yield j
    finally:
        j.cleanup()


@pytest.mark.parametrize("kind", ["read", "echo", "udp"])
@pytest.mark.parametrize("server", ["c", "python"])
def test_c_client_counts_every_request_against_either_reference_server(
        tools: cclient.CTools, janitor: Janitor, kind: str, server: str) -> None:
    binary = tools.refserver if server == "c" else None
    with reference_server(janitor, kind, PAYLOAD, binary=binary) as addr:
        result = loadgen.run_load(janitor, kind, addr, PAYLOAD, 2, 0.1, 0.3,
                                  timeout=2.0, rto=0.2, client=tools.client)
    assert result.errors == 0, result.error_kinds
    assert result.ok > 0
    assert result.ok == len(result.latencies)
    assert all(0 < lat < 2.0 for lat in result.latencies)


def test_c_client_reports_a_wrong_reply_as_an_error(tools: cclient.CTools,
                                                    janitor: Janitor) -> None:
    # A server that answers every connection with other bytes than expected.
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"something else\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        result = loadgen.run_load(janitor, "read", listener.getsockname(), PAYLOAD, 1, 0.0,
                                  0.3, timeout=2.0, client=tools.client)
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert result.ok == 0
    assert result.errors > 0
    assert set(result.error_kinds) == {"wrong reply"}


def test_c_client_reports_a_refused_connection_by_its_errno(tools: cclient.CTools,
                                                          janitor: Janitor) -> None:
    # A port nobody listens on: bound, never listening, so connect() is refused.
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        addr = placeholder.getsockname()
        result = loadgen.run_load(janitor, "read", addr, PAYLOAD, 1, 0.0, 0.2,
                                  timeout=1.0, client=tools.client)
    assert result.ok == 0
    assert set(result.error_kinds) == {"Connection refused"}


def test_report_parser_reads_errors_and_latencies() -> None:
    lat = array("d", [0.001, 0.002])
    out = (b"retransmits 3\nerrors 2\n4 wrong reply\n1 Connection reset by peer\n"
           b"latencies 2\n" + lat.tobytes())
    errors, retransmits, latencies = loadgen._c_report(out)
    assert errors == {"wrong reply": 4, "Connection reset by peer": 1}
    assert retransmits == 3
    assert list(latencies) == [0.001, 0.002]
    with pytest.raises(ValueError):
        loadgen._c_report(out[:-4])     # latencies cut short
    with pytest.raises(ValueError):
        loadgen._c_report(b"")
