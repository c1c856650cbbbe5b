"""ServiceLogs on real files and a real syslog socket: how long an entry may be."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pyxinetd.config.model import FileTarget, SyslogTarget
from pyxinetd.log import ProgramLog, SyslogSender
from pyxinetd.servicelog import MAX_ENTRY_BYTES, ServiceLogs, start_entry
from tests.factories import make_service


def entries(path: Path) -> list[str]:
    return [line.split(": ", 1)[1]
            for line in path.read_text(errors="surrogateescape").splitlines()]


def test_an_entry_longer_than_xinetds_buffer_is_cut_at_1024_bytes(tmp_path: Path) -> None:
    program = ProgramLog.to_file(str(tmp_path / "program.log"))
    sink_path = str(tmp_path / "syslog")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(sink_path)
        sink.settimeout(10)
        sender = SyslogSender(sink_path)
        logs = ServiceLogs(program, sender)
        log = tmp_path / "svc.log"
        long_id = "E" * 1013        # `START: ` + id + ` pid` is 1024 bytes
        svc = make_service(name="edge", id=long_id, log_type=FileTarget(str(log)),
                           log_on_success=frozenset({"PID", "HOST"}))
        short = make_service(name="short", log_type=FileTarget(str(log)),
                             log_on_success=frozenset({"PID", "HOST"}))
        by_syslog = make_service(name="sys", id=long_id, log_type=SyslogTarget("local2"),
                                 log_on_success=frozenset({"PID", "HOST"}))
        logs.write(svc, start_entry(svc, 4321, "127.0.0.1"))
        logs.write(short, start_entry(short, 4321, "127.0.0.1"))
        logs.write(by_syslog, start_entry(by_syslog, 4321, "127.0.0.1"))
        # A multi-byte character split by the cut leaves its first byte, as in
        # xinetd, which cuts bytes.
        wide = make_service(name="wide", id="é" * 600, log_type=FileTarget(str(log)),
                            log_on_success=frozenset({"PID"}))
        logs.write(wide, start_entry(wide, 1, ""))
        message = sink.recv(4096).decode()
        logs.close()
        sender.close()
    assert entries(log) == [f"START: {long_id} pid", "START: short pid=4321 from=127.0.0.1",
                            "START: " + "é" * 508 + "\udcc3"]
    assert len(f"START: {long_id} pid") == MAX_ENTRY_BYTES
    assert message.endswith(f"xinetd[{os.getpid()}]: START: {long_id} pid")
    program.close()
