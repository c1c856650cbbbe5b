"""etc/init.d/xinetd where Debian 12's xinetd package was: at /etc/init.d/xinetd, with the
package's own /etc/default/xinetd, /etc/xinetd.conf and /etc/xinetd.d (byte for byte,
from the package scripts/fetch-xinetd extracts), and every path at its standard place.

Each case runs as a shell script in private mount and network namespaces: /etc is an
overlay whose writes stay in the namespace, /run a private tmpfs. Only the daemon is
this checkout's (PYXINETD_DAEMON), as the test cannot install it.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import free_port, namespace_problem
from tests.oracle import require_xinetd

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "etc" / "init.d" / "xinetd"

# The Debian machine: the package's files in /etc, this script as /etc/init.d/xinetd.
# $1 the package's extracted root, $2 this script, $3 a folder for the overlay layers.
_MACHINE = r"""
set -eu
ip link set lo up
mount -t tmpfs tmpfs "$3"
mkdir "$3/u" "$3/w"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$3/u,workdir=$3/w" /etc
mount -t tmpfs tmpfs /run
rm -rf /etc/xinetd.d /etc/xinetd.conf /etc/default/xinetd /etc/init.d/xinetd
mkdir -p /etc/default /etc/init.d
cp -p "$1/etc/xinetd.conf" /etc/xinetd.conf
cp -pr "$1/etc/xinetd.d" /etc/xinetd.d
cp -p "$1/etc/default/xinetd" /etc/default/xinetd
cp -p "$2" /etc/init.d/xinetd
rm -f /etc/inetd.conf
# Each step prints its exit status.
set +e
"""


def run_on_debian(tmp_path: Path, steps: str, *, port: int = 0) -> dict[str, str]:
    """Run `steps` (sh) on the Debian machine; the KEY=value lines they print."""
    problem = namespace_problem("ip", "mount")
    if problem is not None:
        pytest.skip(problem)
    package_root = Path(require_xinetd()).parent / "root"
    wrapper = tmp_path / "pyxinetd"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m pyxinetd \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    layers = tmp_path / "layers"
    layers.mkdir()
    script = tmp_path / "machine.sh"
    script.write_text(_MACHINE + steps + "\ntrue\n")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYXINETD_", "SYSTEMCTL_"))}
    env.update(PYXINETD_DAEMON=str(wrapper), PORT=str(port), PYTHON=sys.executable)
    done = subprocess.run(["unshare", "-m", "-n", "--propagation", "private", "sh",
                           str(script), str(package_root), str(SCRIPT), str(layers)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done
    found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return found


def test_debians_defaults_and_configuration_start_the_daemon_as_debians_xinetd(
        tmp_path: Path) -> None:
    # Debian's /etc/default/xinetd says -stayalive and INETD_COMPAT=Yes; every service
    # its xinetd.d ships is disabled. One more file, as an administrator adds one, is
    # served beside them.
    steps = r"""
printf 'service echo\n{\n\ttype = INTERNAL UNLISTED\n\tid = echo-probe\n\tsocket_type = stream\n\tport = %s\n\tbind = 127.0.0.1\n\twait = no\n}\n' "$PORT" > /etc/xinetd.d/probe
: > /etc/inetd.conf
/etc/init.d/xinetd start >/dev/null; echo "start=$?"
echo "argv=$(tr '\000' ' ' < "/proc/$(cat /run/xinetd.pid)/cmdline")"
echo "answer=$("$PYTHON" -c 'import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
c.sendall(b"ping\n"); print(c.recv(100).decode().strip())' "$PORT")"
/etc/init.d/xinetd status >/dev/null; echo "status=$?"
/etc/init.d/xinetd reload >/dev/null; echo "reload=$?"
/etc/init.d/xinetd stop >/dev/null; echo "stop=$?"
/etc/init.d/xinetd status >/dev/null; echo "stopped=$?"
"$PYXINETD_DAEMON" check -f /etc/xinetd.conf | tail -n 2 | head -n 1 | sed 's/^/check=/'
"""
    result = run_on_debian(tmp_path, steps, port=free_port())
    assert result["start"] == "0", result
    assert result["argv"].split()[-4:] == ["-pidfile", "/run/xinetd.pid", "-stayalive",
                                           "-inetd_compat"], result
    assert result["answer"] == "ping", result
    assert (result["status"], result["reload"], result["stop"], result["stopped"]) == \
        ("0", "0", "0", "3"), result
    assert result["check"] == ("/etc/xinetd.conf: 1 service(s) to activate, 17 dropped, "
                               "0 warning(s), 0 error(s)"), result


def test_under_systemd_the_actions_go_to_the_unit_as_debians_scripts_do(
        tmp_path: Path) -> None:
    # Under systemd, xinetd.service's daemon is the unit's: `/etc/init.d/xinetd restart`
    # run from a shell must become `systemctl restart xinetd.service` (Debian's
    # /lib/lsb/init-functions does it), not a daemon stopped behind systemd's back and
    # one started outside the unit. systemd cannot run here: /run/systemd/system says it
    # does, and a `systemctl` first in the script's PATH records what it is asked.
    if not Path("/lib/lsb/init-functions.d/40-systemd").is_file():
        pytest.skip("needs Debian's /lib/lsb/init-functions with its systemd hook")
    if shutil.which("systemctl") is None:
        pytest.skip("needs systemctl, whose /usr/local/sbin stand-in is mounted over it")
    steps = r"""
mkdir -p /run/systemd/system
mount -t tmpfs tmpfs /usr/local/sbin
cat > /usr/local/sbin/systemctl <<'EOF'
#!/bin/sh
echo "$*" >> /run/systemctl.calls
case "$*" in *"--value show"*) echo loaded ;; esac
exit 0
EOF
chmod +x /usr/local/sbin/systemctl
for action in start restart reload status stop; do
    /etc/init.d/xinetd "$action" >/dev/null; echo "$action=$?"
done
[ -e /run/xinetd.pid ] && echo "pidfile=yes" || echo "pidfile=no"
echo "calls=$(grep -v -e ' show ' -e is-system-running /run/systemctl.calls | tr '\n' ';')"
SYSTEMCTL_SKIP_REDIRECT=1 /etc/init.d/xinetd status >/dev/null; echo "skipped=$?"
"""
    result = run_on_debian(tmp_path, steps)
    for action in ("start", "restart", "reload", "status", "stop"):
        assert result[action] == "0", result
    assert result["pidfile"] == "no", result      # this script started no daemon
    assert result["calls"].split(";")[:-1] == [
        f"--no-pager {action} xinetd.service"
        for action in ("start", "restart", "reload", "status", "stop")], result
    # Run by systemd itself (a generated unit) or told not to, the script acts alone.
    assert result["skipped"] == "3", result
