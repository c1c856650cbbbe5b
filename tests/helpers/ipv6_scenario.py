"""IPv6 and dual-stack probes against one daemon inside a private network namespace.

    unshare -n python3 ipv6_scenario.py WORKDIR DAEMON [ARG...]

WORKDIR/plan.json says what to do:

- "sysctl": `KEY=VALUE` settings of the namespace made before `lo` comes up (such as
  `net.ipv6.conf.all.disable_ipv6=1` for a host without IPv6; optional);
- "links": `ip` argument lists run after `lo` is up (a veth pair, addresses...);
- "hosts": the text of /etc/hosts for the run (optional; needs a private mount
  namespace too: `unshare -n -m`);
- "etc": {NAME: TEXT} files written into a private layer over /etc, such as
  hosts.allow (optional; with "hosts" only, for its mount namespace);
- "conf": the configuration, where {LOG} is the service log, {PY} this interpreter and
  {HELPERS} this folder;
- "probes": a list of {"proto": "tcp"|"udp", "dst": ADDRESS, "port": N, "src": ADDRESS
  (optional), "scope": INTERFACE (optional, for link-local addresses), "send": TEXT
  (optional), "until": TEXT (optional: stop reading a stream once the reply ends
  with it, instead of at EOF)}.

Prints one JSON object: "replies" (per probe, the text received, or `refused`,
`timeout`, `error: ...`; for UDP also the reply's source address as "from"), and the
service log and program log lines with their time stamps and pids taken out. Standard
library only; every wait bounded.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

from scenario_support import begin, read, running, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
STAMP = re.compile(r"^\d\d/\d\d/\d\d@\d\d:\d\d:\d\d:? ")
PID = re.compile(r"(pid=|xinetd\[)\d+")
DURATION = re.compile(r"duration=\d+")


def _address(dst: str, port: int, scope: str | None) -> tuple[object, ...]:
    if ":" not in dst:
        return (dst, port)
    return (dst, port, 0, socket.if_nametoindex(scope) if scope else 0)


def _family(dst: str) -> int:
    return socket.AF_INET6 if ":" in dst else socket.AF_INET


def probe_tcp(p: dict) -> dict:
    with socket.socket(_family(p["dst"]), socket.SOCK_STREAM) as s:
        s.settimeout(5)
        try:
            if p.get("src"):
                s.bind(_address(p["src"], 0, p.get("scope")))
            s.connect(_address(p["dst"], p["port"], p.get("scope")))
        except ConnectionRefusedError:
            return {"reply": "refused"}
        except OSError as exc:
            return {"reply": f"error: {exc.strerror}"}
        data = b""
        try:
            if p.get("send"):
                s.sendall(p["send"].encode())
            while chunk := s.recv(65536):
                data += chunk
                if p.get("until") and data.endswith(p["until"].encode()):
                    break
        except socket.timeout:
            return {"reply": data.decode(errors="replace") + "<timeout>"}
        except OSError:
            pass  # a reset after a refusal
        return {"reply": data.decode(errors="replace")}


def probe_udp(p: dict) -> dict:
    with socket.socket(_family(p["dst"]), socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        if p.get("src"):
            s.bind(_address(p["src"], 0, p.get("scope")))
        try:
            s.sendto(p.get("send", "x\n").encode(),
                     _address(p["dst"], p["port"], p.get("scope")))
            data, sender = s.recvfrom(65536)
        except socket.timeout:
            return {"reply": "timeout"}
        except OSError as exc:
            return {"reply": f"error: {exc.strerror}"}
        return {"reply": data.decode(errors="replace"), "from": sender[0]}


def clean(text: str) -> list[str]:
    lines = [DURATION.sub("duration=D", PID.sub(r"\1N", STAMP.sub("", line)))
             for line in text.splitlines()]
    return [line for line in lines if line]


def main() -> int:
    with open(os.path.join(sys.argv[1], "plan.json")) as f:
        plan = json.load(f)
    for setting in plan.get("sysctl", []):
        subprocess.run(["sysctl", "-q", "-w", setting], check=True)
    run = begin()
    if "hosts" in plan:
        hosts = os.path.join(os.path.dirname(run.conf), "hosts")
        with open(hosts, "w") as f:
            f.write(plan["hosts"])
        subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    if plan.get("etc"):
        # Files /etc may lack (hosts.allow, hosts.deny): a private layer over it, on a
        # tmpfs, as overlayfs takes no upper layer on an overlay (/tmp may be one).
        layer = os.path.join(os.path.dirname(run.conf), "etc-layer")
        os.makedirs(layer)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", layer], check=True)
        os.makedirs(os.path.join(layer, "u"))
        os.makedirs(os.path.join(layer, "w"))
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir=/etc,upperdir={layer}/u,workdir={layer}/w", "/etc"],
                       check=True)
        for name, text in plan["etc"].items():
            with open(os.path.join("/etc", name), "w") as f:
                f.write(text)
    if "hosts" in plan:
        subprocess.run(["mount", "--bind", hosts, "/etc/hosts"], check=True)
    for link in plan.get("links", []):
        subprocess.run(["ip", *link], check=True)
    with open(run.conf, "w") as f:
        f.write(plan["conf"].replace("{LOG}", run.service_log)
                .replace("{PY}", sys.executable).replace("{HELPERS}", HERE))
    replies = []
    with running(run.daemon, run.conf, run.program_log):
        for p in plan["probes"]:
            if p["proto"] == "ip":     # a change to the links between two probes
                subprocess.run(["ip", *p["args"]], check=True)
                continue
            replies.append(probe_tcp(p) if p["proto"] == "tcp" else probe_udp(p))
        # Let the last servers' EXIT lines reach the log.
        expected = plan.get("exits", 0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and \
                read(run.service_log).count("EXIT:") < expected:
            time.sleep(0.02)
        wait_for(run.service_log, "", deadline)
    print(json.dumps({"replies": replies, "service_log": clean(read(run.service_log)),
                      "program_log": clean(read(run.program_log))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
