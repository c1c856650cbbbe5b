"""Signals that arrive after SIGTERM while the daemon is still on its way out.

SIGTERM unregisters the RPC services from the portmapper before the daemon exits, and
that exchange is not instant: up to about 2 s against a portmapper that does not
answer. xinetd makes those calls blocking and then exits, so nothing it is sent
meanwhile is acted on, and no connection is served. The daemon here keeps its loop
turning during the exchange; it must not serve, reload or dump in that window.

The window is held open by a fake portmapper that answers SET but never UNSET, on
127.0.0.1:111 of a private network namespace: this file runs itself there as a
script (`unshare -n python3 THIS_FILE WORKDIR`), and prints one JSON object.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

PMAPPROC_UNSET = 2


def fake_portmapper(unsets: list[int]) -> None:
    """Answer every call with TRUE, except UNSET, which is only counted."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 111))
        while True:
            data, peer = sock.recvfrom(65536)
            xid, _, _, _, _, procedure = struct.unpack(">6I", data[:24])
            if procedure == PMAPPROC_UNSET:
                unsets.append(xid)
                continue
            # xid, REPLY, MSG_ACCEPTED, AUTH_NONE verifier (empty), SUCCESS, TRUE
            sock.sendto(struct.pack(">7I", xid, 1, 0, 0, 0, 0, 1), peer)


def configuration(port: int) -> str:
    rpc = ("service rpcsvc\n{\n\ttype = RPC UNLISTED\n\trpc_number = 536873369\n"
           "\trpc_version = 1\n\tsocket_type = stream\n\tprotocol = tcp\n\twait = no\n"
           "\tuser = root\n\tserver = /bin/true\n}\n")
    plain = ("service plain\n{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
             f"\tprotocol = tcp\n\tport = {port}\n\tbind = 127.0.0.1\n\twait = no\n"
             "\tuser = root\n\tserver = /bin/echo\n\tserver_args = served\n}\n")
    return rpc + plain


def scenario(workdir: str) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).parents[1] / "helpers"))
    import scenario_support as support

    support.bring_up_loopback()
    unsets: list[int] = []
    threading.Thread(target=fake_portmapper, args=(unsets,), daemon=True).start()
    port = support.free_port()
    conf, log = os.path.join(workdir, "x.conf"), os.path.join(workdir, "program.log")
    with open(conf, "w") as f:
        f.write(configuration(port))
    proc = subprocess.Popen([sys.executable, "-m", "pyxinetd", "-f", conf, "-dontfork",
                             "-filelog", log], stdin=subprocess.DEVNULL)
    try:
        if not support.wait_for(log, "Started working", time.monotonic() + 20):
            raise SystemExit("the daemon did not start")
        # What a reload would read: the plain service removed (its servers ended).
        with open(conf, "w") as f:
            f.write(configuration(port).split("service plain")[0])
        proc.send_signal(signal.SIGTERM)
        if not support.wait_for(log, "Exiting", time.monotonic() + 20):
            raise SystemExit("no Exiting line")
        proc.send_signal(signal.SIGHUP)
        proc.send_signal(signal.SIGUSR1)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                answer = conn.recv(100).decode()
        except OSError as err:
            answer = type(err).__name__
        status = proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    after = support.read(log).split("Exiting...", 1)[1]
    return {"status": status, "unsets": len(unsets), "answer": answer,
            "after": after.splitlines()[1:]}


if __name__ == "__main__":
    print(json.dumps(scenario(sys.argv[1])))
else:
    import pytest

    from tests.daemon import namespace_problem

    # The scenario brings up the namespace's loopback with `ip`.
    pytestmark = pytest.mark.skipif(namespace_problem("ip") is not None,
                                    reason=str(namespace_problem("ip")))

    def test_nothing_is_served_reloaded_or_dumped_after_sigterm(tmp_path: Path) -> None:
        env = dict(os.environ, PYXINETD_DUMP_FILE=str(tmp_path / "dump"))
        done = subprocess.run(["unshare", "-n", sys.executable, __file__, str(tmp_path)],
                              capture_output=True, text=True, timeout=120, check=False,
                              env=env)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["unsets"] > 0     # the window was open
        assert result["status"] == 0
        # Nothing but the unanswered UNSET is logged after `Exiting...`.
        assert [line for line in result["after"] if "pmap_unset failed" not in line] == []
        assert result["answer"] in ("ConnectionRefusedError", "ConnectionResetError")
        assert not (tmp_path / "dump").exists()
