"""Hostile and unusual clients of the builtins, tcpmux and the refusal paths, run
against one daemon in a private network namespace.

    unshare -n python3 wire_scenario.py WORKDIR DAEMON [ARG...]

Brings `lo` up, writes a configuration of the stream and dgram builtins on their
standard ports, tcpmux with a TCPMUX and a TCPMUXPLUS service, and services with
banners, `only_from`, `instances` and `per_source`; then drives each with odd clients
(partial lines, bare CRs, NULs, non-ASCII, a MiB without a newline, half-closes at
once, closes without reading, empty and 64 KiB datagrams, privileged source ports).
Prints one JSON object: `clients`, what each client saw, written as
`<what arrived> <how it ended>` where the end is EOF (a FIN), RST (a reset) or `open`
(nothing more within a short wait); and `serving`, for each stalled or flooding
client, whether another client was answered meanwhile. Deterministic bytes are kept
as they are (repr); time-dependent ones are reduced to their shape. Standard library
only; every wait bounded.
"""

import json
import os
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable

from scenario_support import begin, free_port, running

HOST = "127.0.0.1"
OTHER = "127.0.0.2"     # a second loopback address, refused by only_from
DAYTIME = re.compile(rb"\d\d [A-Z]{3} \d{4} \d\d:\d\d:\d\d \S+\r\n")
MIB = 1024 * 1024


def shape(data: bytes, opaque: bool = False) -> str:
    """Time-dependent replies by their shape, the rest as they are (long ones cut);
    `opaque` ones (time's 4 bytes) by their length."""
    if opaque:
        return f"<{len(data)} bytes>"
    data = DAYTIME.sub(b"<daytime>", data)
    if data == b"<daytime>":
        return "<daytime>"
    if len(data) > 200:
        return f"<{len(data)} bytes {data[:40]!r}...{data[-20:]!r}>"
    return repr(data)


def outcome(conn: socket.socket, wait: float = 0.3, limit: int = 4 * MIB,
            settle: float = 0.05, opaque: bool = False) -> str:
    """Everything that arrives until EOF, a reset, `limit` bytes or `wait` seconds of
    silence; `settle` first, so that a reset the server sent has arrived."""
    time.sleep(settle)
    got = bytearray()
    conn.settimeout(wait)
    try:
        while len(got) < limit:
            chunk = conn.recv(65536)
            if not chunk:
                return f"{shape(bytes(got), opaque)} EOF"
            got += chunk
        return f"{shape(bytes(got[:limit]), opaque)} more"
    except socket.timeout:
        return f"{shape(bytes(got), opaque)} open"
    except ConnectionResetError:
        return f"{shape(bytes(got), opaque)} RST"
    except OSError as exc:
        return f"{shape(bytes(got), opaque)} {type(exc).__name__}"


def connect(port: int, source: str = HOST) -> socket.socket:
    conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    conn.bind((source, 0))
    conn.settimeout(5)
    conn.connect((HOST, port))
    return conn


def stream(port: int, data: bytes = b"", *, half_close: bool = False,
           source: str = HOST, wait: float = 0.3, limit: int = 4 * MIB,
           opaque: bool = False) -> str:
    """One client: send `data` at once (in a thread when large, while reading), shut
    down its sending side if asked, and report what came back."""
    try:
        conn = connect(port, source)
    except OSError as exc:
        return f"connect {type(exc).__name__}"
    with conn:
        sender = None
        if len(data) > 65536:
            def push() -> None:
                try:
                    conn.sendall(data)
                    if half_close:
                        conn.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            sender = threading.Thread(target=push, daemon=True)
            sender.start()
        else:
            try:
                if data:
                    conn.sendall(data)
                if half_close:
                    conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass    # the server closed first: what it sent is still there to read
        result = outcome(conn, wait, limit, opaque=opaque)
        if sender is not None:
            sender.join(5)
        return result


def daytime_answers() -> bool:
    """Whether a fresh daytime client gets its line now (the daemon is not stalled)."""
    try:
        with connect(13) as conn:
            conn.settimeout(3)
            got = b""
            while True:
                chunk = conn.recv(100)
                if not chunk:
                    break
                got += chunk
            return DAYTIME.fullmatch(got) is not None
    except OSError:
        return False


def datagram(port: int, data: bytes, source: tuple[str, int] = (HOST, 0),
             wait: float = 0.5) -> str:
    # xinetd drops what is queued on a datagram builtin's socket once it has answered
    # (docs/compatibility.md): let it finish before the next request.
    time.sleep(0.05)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(source)
        sock.settimeout(wait)
        sock.sendto(data, (HOST, port))
        try:
            reply = sock.recv(70000)
        except socket.timeout:
            return "no reply"
        except OSError as exc:
            return type(exc).__name__
        if port == 37:
            return f"<time {len(reply)} bytes>"
        return shape(reply)


def service(name: str, socket_type: str = "stream", *, id_: str | None = None,
            port: int | None = None, extra: str = "", server: str = "",
            types: str = "INTERNAL") -> str:
    wait = "yes" if socket_type == "dgram" else "no"
    text = f"service {name}\n{{\n\ttype = {types}\n\tsocket_type = {socket_type}\n"
    text += f"\twait = {wait}\n\tuser = root\n"
    if id_:
        text += f"\tid = {id_}\n"
    if port:
        text += f"\tport = {port}\n"
    if server:
        text += f"\tserver = {server}\n"
    return text + extra + "}\n"


def configuration(workdir: str, log: str, ports: dict[str, int]) -> str:
    files = {}
    for kind in ("banner", "banner_success", "banner_fail"):
        files[kind] = os.path.join(workdir, kind)
        with open(files[kind], "w") as f:
            f.write(f"<{kind}>\n")
    banners = "".join(f"\t{kind} = {path}\n" for kind, path in files.items())
    refusing = banners + f"\tonly_from = {HOST}\n"
    text = (f"defaults\n{{\n\tlog_type = FILE {log}\n\tlog_on_success = HOST\n"
            f"\tlog_on_failure = HOST\n\tcps = 0 0\n}}\n")
    for name in ("echo", "discard", "chargen", "daytime", "time"):
        text += service(name, id_=f"{name}-stream")
        text += service(name, "dgram", id_=f"{name}-dgram")
    text += service("tcpmux")
    text += service("plus", types="TCPMUXPLUS UNLISTED", server="/bin/echo",
                    extra="\tserver_args = from plus\n")
    text += service("mux", types="TCPMUX UNLISTED", server="/bin/echo",
                    extra="\tserver_args = from mux\n")
    text += service("denied", types="TCPMUX UNLISTED", server="/bin/echo",
                    extra=f"\tserver_args = from denied\n{banners}\tonly_from = {OTHER}\n")
    text += service("deniedplus", types="TCPMUXPLUS UNLISTED", server="/bin/echo",
                    extra=f"\tserver_args = from deniedplus\n{banners}"
                          f"\tonly_from = {OTHER}\n")
    text += service("greeted", types="TCPMUXPLUS UNLISTED", server="/bin/echo",
                    extra=f"\tserver_args = from greeted\n{banners}")
    unlisted = "INTERNAL UNLISTED"
    text += service("tcpmux", id_="b-tcpmux", port=ports["b-tcpmux"], types=unlisted,
                    extra=refusing)
    text += service("echo", id_="b-echo", port=ports["b-echo"], types=unlisted,
                    extra=refusing)
    text += service("daytime", id_="b-daytime", port=ports["b-daytime"], types=unlisted,
                    extra=refusing)
    text += service("ext", port=ports["b-ext"], types="UNLISTED", server="/bin/echo",
                    extra=refusing + "\tserver_args = from ext\n")
    text += service("echo", "dgram", id_="b-echo-dgram", port=ports["b-echo-dgram"],
                    types=unlisted, extra=refusing)
    text += service("echo", id_="i-echo", port=ports["i-echo"], types=unlisted,
                    extra=banners + "\tinstances = 1\n")
    text += service("cat", port=ports["p-cat"], types="UNLISTED", server="/bin/cat",
                    extra=banners + "\tper_source = 1\n")
    text += service("echo", id_="n-echo", port=ports["n-echo"], types=unlisted,
                    extra=f"\tonly_from = {HOST}\n")
    return text


def builtin_cases(clients: dict[str, str]) -> None:
    clients["echo partial"] = stream(7, b"abc", half_close=True)
    clients["echo bare CRs"] = stream(7, b"a\rb\r\r", half_close=True)
    clients["echo NUL and non-ASCII"] = stream(7, b"\x00\xff\xc3\xa9\x00\r\n",
                                               half_close=True)
    clients["echo half-closed at once"] = stream(7, half_close=True)
    clients["echo no half-close"] = stream(7, b"hello\r\n")
    clients["echo 1 MiB no newline"] = stream(7, b"x" * MIB, half_close=True)
    with connect(7) as conn:
        answers = []
        for i in range(200):
            line = f"request {i}\r\n".encode()
            conn.sendall(line)
            got = b""
            while len(got) < len(line):
                chunk = conn.recv(100)
                if not chunk:
                    break
                got += chunk
            answers.append(got == line)
        conn.shutdown(socket.SHUT_WR)
        clients["echo 200 requests"] = f"{answers.count(True)} echoed, then " + outcome(conn)
    clients["discard data"] = stream(9, b"a" * 100000 + b"\r\n\x00", half_close=True)
    clients["discard no half-close"] = stream(9, b"hello\r\n")
    clients["chargen first lines"] = stream(19, limit=7400)
    clients["chargen half-closed at once"] = stream(19, half_close=True, limit=7400)
    clients["chargen sent to"] = stream(19, b"hello\r\n" * 100, limit=7400)
    for port, name in ((13, "daytime"), (37, "time")):
        opaque = name == "time"
        clients[f"{name} plain"] = stream(port, opaque=opaque)
        clients[f"{name} half-closed at once"] = stream(port, half_close=True,
                                                        opaque=opaque)
        clients[f"{name} sent a line"] = stream(port, b"hello\r\n", opaque=opaque)
        clients[f"{name} sent a partial line"] = stream(port, b"hel", opaque=opaque)
        clients[f"{name} sent 200 KiB"] = stream(port, b"y" * 200000, opaque=opaque)
        clients[f"{name} sent a line, 40 times"] = replies_kept(port)


def replies_kept(port: int, tries: int = 40) -> str:
    """A client that sends a line at once, then reads: in how many tries the reply
    arrived whole (however the connection ended: the line is never read, and xinetd
    resets such a connection)."""
    whole = 0
    for _ in range(tries):
        with connect(port) as conn:
            conn.sendall(b"hello\r\n")
            got = b""
            try:
                while chunk := conn.recv(100):
                    got += chunk
            except OSError:
                pass
        whole += len(got) == 4 if port == 37 else DAYTIME.fullmatch(got) is not None
    return f"{whole}/{tries} replies"


def time_reply_shape(port: int = 37) -> str:
    with connect(port) as conn:
        conn.settimeout(3)
        got = b""
        while True:
            chunk = conn.recv(100)
            if not chunk:
                break
            got += chunk
    if len(got) != 4:
        return f"{len(got)} bytes"
    seconds = struct.unpack("!I", got)[0] - 2208988800
    return "4 bytes, now" if abs(seconds - time.time()) < 5 else "4 bytes, wrong time"


TCPMUX_LINES = {
    "plus": b"plus\r\n", "PLUS": b"PLUS\r\n", "Plus": b"Plus\r\n", "mux": b"mux\r\n",
    "+plus": b"+plus\r\n", "+mux": b"+mux\r\n", "help": b"help\r\n", "HELP": b"HELP\r\n",
    "unknown": b"unknown\r\n", "trailing space": b"plus \r\n",
    "trailing tab": b"plus\t\r\n", "leading space": b" plus\r\n", "LF only": b"plus\n",
    "CR only": b"plus\r", "empty line": b"\r\n", "one char": b"x\r\n",
    "NUL in name": b"pl\x00us\r\n", "NUL after name": b"plus\x00\r\n",
    "NUL then more": b"plus\x00junk\r\n", "non-ASCII": b"pl\xc3\xbcs\r\n",
    "1023 bytes": b"a" * 1021 + b"\r\n", "1025 bytes": b"a" * 1023 + b"\r\n",
    "CRCRLF": b"plus\r\r\n",
    "LF then more": b"plus\nhello", "LF then a partial CR": b"plus\nhello\r",
    "CRLF then more": b"plus\r\nhello",
}


def reset_by_client(port: int, data: bytes) -> None:
    """A client that sends `data` and then resets the connection (SO_LINGER 0)."""
    with connect(port) as conn:
        conn.sendall(data)
        time.sleep(0.02)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def tcpmux_cases(clients: dict[str, str], ports: dict[str, int]) -> None:
    for name in ("denied", "deniedplus", "greeted"):
        clients[f"tcpmux {name}"] = stream(1, f"{name}\r\n".encode())
    clients["b-tcpmux allowed"] = stream(ports["b-tcpmux"], b"plus\r\n")
    clients["b-tcpmux allowed, unknown"] = stream(ports["b-tcpmux"], b"nosuch\r\n")
    clients["b-tcpmux refused"] = stream(ports["b-tcpmux"], source=OTHER)
    for port, data in ((1, b"pl"), (7, b"x" * 1000), (19, b""), (13, b""), (1, b"plus\r\n")):
        reset_by_client(port, data)
    clients["echo after resets"] = stream(7, b"ok\r\n", half_close=True)
    for label, data in TCPMUX_LINES.items():
        clients[f"tcpmux {label}"] = stream(1, data)
    clients["tcpmux no newline, half-closed"] = stream(1, b"plus", half_close=True)
    clients["tcpmux name, half-closed"] = stream(1, b"plus\r\n", half_close=True)
    clients["tcpmux half-closed at once"] = stream(1, half_close=True)
    clients["tcpmux 1 MiB no newline"] = stream(1, b"z" * MIB)
    clients["tcpmux 1 MiB no newline, half-closed"] = stream(1, b"z" * MIB, half_close=True)


def datagram_cases(clients: dict[str, str]) -> None:
    for name, port in (("echo", 7), ("discard", 9), ("chargen", 19), ("daytime", 13),
                       ("time", 37)):
        clients[f"{name}-dgram empty"] = datagram(port, b"")
        clients[f"{name}-dgram NUL"] = datagram(port, b"\x00\xff\r")
    clients["echo-dgram 2049 bytes"] = datagram(7, b"e" * 2049)
    clients["echo-dgram 65507 bytes"] = datagram(7, b"f" * 65507)
    clients["chargen-dgram 65507 bytes"] = datagram(19, b"f" * 65507)
    for name, port in (("discard", 9), ("daytime", 13), ("time", 37)):
        clients[f"{name}-dgram 65507 bytes"] = datagram(port, b"g" * 65507)
    # (Not 7, 9, 13 or 37: a client bound to 127.0.0.1 on a builtin's own port would
    # receive its datagram itself, the more specific binding.)
    for source_port in (1, 19, 53, 123, 1023, 1024):
        clients[f"echo-dgram from port {source_port}"] = datagram(
            7, b"ping", (HOST, source_port))
        clients[f"daytime-dgram from port {source_port}"] = datagram(
            13, b"", (HOST, source_port))


def refusal_cases(clients: dict[str, str], ports: dict[str, int]) -> None:
    for key in ("b-echo", "b-daytime", "b-ext"):
        port = ports[key]
        # (only echo reads: a line sent to the others would only race with their close)
        clients[f"{key} allowed"] = stream(port, b"hi\r\n" if key == "b-echo" else b"",
                                           half_close=True)
        clients[f"{key} refused"] = stream(port, source=OTHER)
        clients[f"{key} refused, half-closed at once"] = stream(port, half_close=True,
                                                                source=OTHER)
        clients[f"{key} refused, sent a line"] = stream(port, b"hi\r\n", source=OTHER)
        clients[f"{key} refused, sent 200 KiB"] = stream(port, b"w" * 200000,
                                                         source=OTHER)
    clients["n-echo refused, no banner"] = stream(ports["n-echo"], source=OTHER)
    clients["n-echo refused, no banner, sent a line"] = stream(ports["n-echo"], b"hi\r\n",
                                                               source=OTHER)
    clients["b-echo-dgram allowed"] = datagram(ports["b-echo-dgram"], b"ping")
    clients["b-echo-dgram refused"] = datagram(ports["b-echo-dgram"], b"ping",
                                               (OTHER, 0))
    for key in ("i-echo", "p-cat"):
        with connect(ports[key]) as held:
            clients[f"{key} held"] = outcome(held)
            clients[f"{key} second"] = stream(ports[key])
            clients[f"{key} second, sent a line"] = stream(ports[key], b"hi\r\n")
            clients[f"{key} second, half-closed at once"] = stream(ports[key],
                                                                   half_close=True)


def stalls(serving: dict[str, bool], clients: dict[str, str]) -> None:
    """Clients that stall or flood; meanwhile, does daytime still answer?"""
    def during(label: str, setup: Callable[[], socket.socket]) -> None:
        conn = setup()
        try:
            time.sleep(0.3)
            serving[label] = daytime_answers()
        finally:
            try:
                conn.shutdown(socket.SHUT_RDWR)     # wakes a thread blocked in recv
            except OSError:
                pass
            conn.close()
        time.sleep(0.1)
        serving[f"after {label}"] = daytime_answers()

    def tcpmux_partial() -> socket.socket:
        conn = connect(1)
        conn.sendall(b"pl")
        return conn

    def echo_flood() -> socket.socket:
        conn = connect(7)
        conn.setblocking(False)
        try:
            for _ in range(4096):
                conn.send(b"q" * 65536)
        except BlockingIOError:
            pass
        return conn

    def chargen_unread() -> socket.socket:
        return connect(19)

    def tcpmux_flood() -> socket.socket:
        conn = connect(1)
        conn.setblocking(False)
        try:
            for _ in range(64):
                conn.send(b"z" * 65536)
        except OSError:
            pass
        return conn

    def flat_out(port: int, payload: bytes) -> Callable[[], socket.socket]:
        """A client that sends `payload` (if any) and reads as fast as it can, in a
        thread, until its connection is closed."""
        def setup() -> socket.socket:
            conn = connect(port)

            def pump() -> None:
                try:
                    while True:
                        if payload:
                            conn.sendall(payload)
                        if not conn.recv(65536):
                            return
                except OSError:
                    return
            threading.Thread(target=pump, daemon=True).start()
            return conn
        return setup

    during("tcpmux partial name", tcpmux_partial)
    during("chargen read flat out", flat_out(19, b""))
    during("echo flooded both ways", flat_out(7, b"p" * 65536))
    during("echo flooded, never read", echo_flood)
    during("chargen never read", chargen_unread)
    during("tcpmux flooded", tcpmux_flood)
    # Many idle clients of every stream builtin at once.
    held = [connect(port) for port in (7, 9, 19, 1) for _ in range(20)]
    time.sleep(0.3)
    serving["80 idle clients"] = daytime_answers()
    for conn in held:
        conn.close()
    clients["echo after the stalls"] = stream(7, b"still here\r\n", half_close=True)


def main() -> int:
    run = begin()
    workdir = os.path.dirname(run.conf)
    log = run.program_log
    if os.path.exists(log):
        os.unlink(log)
    ports = {key: free_port() for key in ("b-echo", "b-daytime", "b-ext", "b-echo-dgram",
                                          "i-echo", "p-cat", "n-echo", "b-tcpmux")}
    with open(run.conf, "w") as f:
        f.write(configuration(workdir, log, ports))
    clients: dict[str, str] = {}
    serving: dict[str, bool] = {}
    with running(run.daemon, run.conf, log):
        builtin_cases(clients)
        clients["time shape"] = time_reply_shape()
        tcpmux_cases(clients, ports)
        datagram_cases(clients)
        refusal_cases(clients, ports)
        stalls(serving, clients)
    print(json.dumps({"clients": clients, "serving": serving}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
