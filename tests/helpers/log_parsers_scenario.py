"""The events log parsers look for in xinetd's lines, against one daemon, logged both to
syslog and to a FILE log.

    unshare -n -m --propagation private python3 log_parsers_scenario.py WORKDIR DAEMON [ARG...]

In its private namespaces it brings `lo` up, overlays /dev and /etc with private
writable layers (/dev/log is a socket this script reads, /etc/hosts.deny a file it
writes), and runs each case of CASES twice: as a service logging to `SYSLOG authpriv`
(what Debian's rsyslog writes to /var/log/auth.log, the file logwatch's `secure` group
reads) and, under the id `<case>_file`, to a FILE log. Every client comes from an
address of its own in 127.0.0.0/8, so that a parser's verdict names the host of each
event (the IPv6 socket's second client is ::1). No identd runs: USERID queries are
refused.

Prints one JSON object: "syslog", the datagrams the daemon sent to /dev/log, as sent;
"file", the FILE log's lines, as written. Standard library only; every wait bounded.
"""

import json
import os
import socket
import sys
import time

from scenario_support import (
    SyslogSink, begin, far_window, free_port, private_dev_and_etc, read, running,
    wait_settled, write_file)

LISTEN = "127.0.0.1"
ALLOWED = "127.0.0.10"          # the one peer only_from lets in

# id -> (the service's own lines, its clients' source addresses, how they are driven)
CASES = {
    "served": ("", ("127.0.0.10", "127.0.0.11"), "each"),
    "only_from": (f"\tonly_from = {ALLOWED}\n", ("127.0.0.2", "127.0.0.2"), "each"),
    "no_access": ("\tno_access = 127.0.0.3\n", ("127.0.0.3",), "each"),
    "per_source": ("\tper_source = 1\n", ("127.0.0.4", "127.0.0.4"), "held"),
    "instances": ("\tinstances = 1\n", ("127.0.0.5", "127.0.0.6"), "held"),
    "access_times": ("\taccess_times = {window}\n", ("127.0.0.7",), "each"),
    "libwrap": ("\tlibwrap = deniedwrap\n", ("127.0.0.8",), "each"),
    # An IPv6 socket: an IPv4 client comes as ::ffff:127.0.0.9, then an IPv6 one.
    "dual_stack": (f"\tflags = IPv6\n\tbind = ::\n\tonly_from = {ALLOWED}\n",
                   ("127.0.0.9", "::1"), "each"),
}
DEFAULTS = ("defaults\n{\n\tlog_on_success = HOST PID EXIT DURATION USERID\n"
            "\tlog_on_failure = HOST ATTEMPT\n\tcps = 0 0\n}\n")


def service(sid, port, body, server, log):
    return (f"service {sid}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tuser = root\n\tserver = {server}\n{body}"
            + ("" if "\tbind =" in body else f"\tbind = {LISTEN}\n") +
            f"\tport = {port}\n\tlog_type = {log}\n}}\n")


def connect(port, source):
    to = "::1" if ":" in source else LISTEN
    conn = socket.create_connection((to, port), timeout=5, source_address=(source, 0))
    conn.settimeout(5)
    return conn


def to_eof(conn):
    """Close our side (a greeter's cat then ends) and read what the server sends until
    the connection ends."""
    with conn:
        try:
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(4096):
                pass
        except OSError:
            pass


def each(port, sources):
    for source in sources:
        to_eof(connect(port, source))


def held(port, sources):
    """The first client's server runs (it has greeted) while the others ask: they are
    refused; then the first client closes and its server ends."""
    first = connect(port, sources[0])
    try:
        first.recv(64)
        for source in sources[1:]:
            to_eof(connect(port, source))
    finally:
        to_eof(first)


def main():
    run = begin()
    workdir = os.path.dirname(run.conf)
    private_dev_and_etc()
    write_file("/etc/hosts.deny", "deniedwrap: ALL\n")
    # Greets its client, then echoes until the client closes.
    server = write_file(os.path.join(workdir, "greeter.sh"),
                        "#!/bin/sh\necho ready\nexec cat\n", 0o755)
    sink = SyslogSink()
    window = far_window()
    ports = {}
    text = DEFAULTS
    for case, (body, _, _) in CASES.items():
        for sid, log in ((case, "SYSLOG authpriv"),
                         (f"{case}_file", f"FILE {run.service_log}")):
            ports[sid] = free_port()
            text += service(sid, ports[sid], body.format(window=window), server, log)
    write_file(run.conf, text)
    with running(run.daemon, run.conf, run.program_log) as proc:
        for case, (_, sources, how) in CASES.items():
            for sid in (case, f"{case}_file"):
                (held if how == "held" else each)(ports[sid], sources)
                sink.drain()
        # Every server has ended and been reaped: its EXIT line is written.
        wait_settled(proc.pid, time.monotonic() + 15)
    sink.drain()     # what arrived up to the daemon's exit
    print(json.dumps({"syslog": sink.messages,
                      "file": read(run.service_log).split("\n")[:-1]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
