"""flags = INTERCEPT on a stream wait = yes service, run against one daemon inside a
private network namespace.

    unshare -n python3 intercept_scenario.py WORKDIR DAEMON [ARG...]

Brings `lo` up, writes a configuration (one stream wait = yes service with INTERCEPT and
`no_access = 127.0.0.3`, its server tests/helpers/intercept_server.py serving three
clients, cps off, a FILE service log), starts `DAEMON ARG... -f CONF -dontfork -filelog
LOG`, then connects from 127.0.0.2, 127.0.0.3 and 127.0.0.2 again, one after the other.
Prints one JSON object: what each client got first (the server's greeting, or "" when it
was closed or reset), the service log's START and FAIL lines and the program log.
Standard library only; every wait bounded.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(path: str, pattern: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with open(path, errors="replace") as f:
                if re.search(pattern, f.read()):
                    return True
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    return False


def first_reply(source: str, port: int) -> str:
    conn = socket.socket()
    conn.settimeout(5)
    try:
        conn.bind((source, 0))
        conn.connect(("127.0.0.1", port))
        data = conn.recv(200).decode(errors="replace")
        if data:
            conn.sendall(b"bye\n")
            conn.recv(200)
        return data
    except OSError:
        return ""
    finally:
        conn.close()


def read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def main() -> int:
    workdir, daemon = sys.argv[1], sys.argv[2:]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    port = free_port()
    service_log = os.path.join(workdir, "services.log")
    program_log = os.path.join(workdir, "program.log")
    conf = os.path.join(workdir, "xinetd.conf")
    with open(conf, "w") as f:
        f.write(f"""defaults
{{
\tlog_type = FILE {service_log}
\tlog_on_success = PID HOST
\tlog_on_failure = HOST
\tcps = 0 0
}}
service icept
{{
\ttype = UNLISTED
\tsocket_type = stream
\twait = yes
\tuser = root
\tserver = {sys.executable}
\tserver_args = -I -S {os.path.join(HERE, "intercept_server.py")} 3 3
\tbind = 127.0.0.1
\tport = {port}
\tflags = INTERCEPT
\tno_access = 127.0.0.3
}}
""")
    proc = subprocess.Popen([*daemon, "-f", conf, "-dontfork", "-filelog", program_log],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    result = {}
    try:
        if not wait_for(program_log, "Started working", time.monotonic() + 20):
            raise SystemExit("the daemon did not start")
        result["replies"] = [first_reply(source, port)
                             for source in ("127.0.0.2", "127.0.0.3", "127.0.0.2")]
        wait_for(service_log, r"(START|FAIL): icept .*127\.0\.0\.3", time.monotonic() + 5)
        result["lines"] = re.findall(r"(?:START|FAIL): icept .*", read(service_log))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    result["program_log"] = read(program_log)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
