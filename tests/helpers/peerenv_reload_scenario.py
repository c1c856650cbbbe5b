"""A reload while an admitted PEERENV client waits for its name (the DNS server never
answers), in private network and mount namespaces:

    unshare -n -m --propagation private python3 peerenv_reload_scenario.py WORKDIR CASE DAEMON [ARG...]

/etc/resolv.conf is a private file naming a DNS server on 127.0.0.53 that reads and
never answers (one try of 3 s); the client connects from 127.0.0.2, which /etc/hosts
does not name, so its name lookup waits the whole 3 s. One second in, the
configuration is replaced and the daemon sent SIGHUP. CASE:

- `redirect`: the service becomes a redirect to a target the scenario runs (it
  answers `from the target`);
- `userid`: the service stays external but its log_on_success drops USERID (an identd
  on 127.0.0.1:113 and 127.0.0.2:113 names the user `alice` at once).

Prints one JSON object: what the client received and the service log.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from scenario_support import begin, free_port, read, running, wait_for, write_file

SERVICE = """service penv
{{
\ttype = UNLISTED
\tsocket_type = stream
\twait = no
\tuser = nobody
\tport = {port}
\tbind = 127.0.0.1
\tflags = IPv4 PEERENV
\tlog_type = FILE {log}
\tlog_on_success = {success}
{body}}}
"""


def serve_forever(listener: socket.socket, answer: bytes) -> None:
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(answer)


def identd(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        with conn:
            query = conn.recv(1000).decode().strip()
            conn.sendall(f"{query} : USERID : UNIX : alice\r\n".encode())


def main() -> int:
    case = sys.argv[2]
    del sys.argv[2]
    scenario = begin()
    workdir = os.path.dirname(scenario.conf)
    resolv = write_file(os.path.join(workdir, "resolv.conf"),
                        "nameserver 127.0.0.53\noptions timeout:3 attempts:1\n")
    subprocess.run(["mount", "--bind", resolv, "/etc/resolv.conf"], check=True)
    hosts = write_file(os.path.join(workdir, "hosts"), "127.0.0.1 localhost\n")
    subprocess.run(["mount", "--bind", hosts, "/etc/hosts"], check=True)
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.53", 53))        # reads nothing: every query times out
    port = free_port()
    target = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=serve_forever, args=(target, b"from the target\n"),
                     daemon=True).start()
    for host in ("127.0.0.1", "127.0.0.2"):
        ident = socket.create_server((host, 113))
        threading.Thread(target=identd, args=(ident,), daemon=True).start()
    external = "\tserver = /bin/echo\n\tserver_args = from the server\n"
    first = SERVICE.format(port=port, log=scenario.service_log, body=external,
                           success="HOST USERID" if case == "userid" else "HOST")
    if case == "redirect":
        second = SERVICE.format(port=port, log=scenario.service_log, success="HOST",
                                body=f"\tredirect = 127.0.0.1 {target.getsockname()[1]}\n")
    else:
        second = SERVICE.format(port=port, log=scenario.service_log, body=external,
                                success="HOST")
    write_file(scenario.conf, first)
    answer: dict[str, str] = {}
    with running(scenario.daemon, scenario.conf, scenario.program_log) as proc:
        def client() -> None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=20,
                                              source_address=("127.0.0.2", 0)) as conn:
                    data = b""
                    while chunk := conn.recv(1000):
                        data += chunk
                    answer["text"] = data.decode()
            except OSError as err:
                answer["text"] = f"<{type(err).__name__}>"
        thread = threading.Thread(target=client)
        thread.start()
        time.sleep(1)
        write_file(scenario.conf + ".new", second)
        os.replace(scenario.conf + ".new", scenario.conf)
        proc.send_signal(signal.SIGHUP)
        wait_for(scenario.program_log, "Reconfigured", time.monotonic() + 20)
        thread.join(30)
        time.sleep(0.5)
    print(json.dumps({"answer": answer.get("text", "<none>"),
                      "services": read(scenario.service_log),
                      "program": read(scenario.program_log)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
