"""Debian 12's log parsers that read xinetd's lines, run on given lines.

`scripts/fetch-logparsers` unpacks fail2ban 1.0.2 and logwatch 7.7 (never installs
them) once per test session; `require_fail2ban()` / `require_logwatch()` skip the
calling test with the reason when they cannot be had (or perl is missing).

- `fail2ban_hosts(lines)`: the host of every line fail2ban's `xinetd-fail` filter
  matches, in order, as `fail2ban-regex --out ip` prints them (a host is banned once
  it has `maxretry` of them within `findtime`: the same hosts, the same bans).
- `logwatch_report(lines)`: the report of logwatch's `secure` service script, the one
  that reads xinetd's START and FAIL lines, with the variables its `secure.conf` sets.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.oracle import run_fetch_script

REPO = Path(__file__).resolve().parents[1]
FETCH_SCRIPT = REPO / "scripts" / "fetch-logparsers"

FAIL2BAN_PACKAGES = Path("usr/lib/python3/dist-packages")
FAIL2BAN_REGEX = Path("usr/bin/fail2ban-regex")
XINETD_FAIL_FILTER = Path("etc/fail2ban/filter.d/xinetd-fail.conf")
LOGWATCH_LIB = Path("usr/share/logwatch/lib")
LOGWATCH_SECURE = Path("usr/share/logwatch/scripts/services/secure")
# What logwatch hands the `secure` script: its conf's `$name = value` lines as
# environment variables (default.conf/services/secure.conf), and the detail level.
LOGWATCH_ENV = {
    "LOGWATCH_DETAIL_LEVEL": "10",
    "secure_ip_lookup": "No",
    "ignore_services": "sshd Pluto stunnel proftpd saslauthd imapd postfix/smtpd",
    # Perl's hash order decides the order of a report's sections: fixed, so that two
    # runs on the same events print the same report.
    "PERL_HASH_SEED": "0",
    "PERL_PERTURB_KEYS": "0",
}


@functools.lru_cache(maxsize=1)
def _fetch() -> tuple[Path | None, str]:
    """Run scripts/fetch-logparsers once; (unpacked root, '') or (None, why not)."""
    path, why = run_fetch_script(FETCH_SCRIPT, os.path.isdir)
    return (None, why) if path is None else (Path(path), "")


def require_fail2ban() -> Path:
    """The unpacked root, or skip the calling test with the reason."""
    import pytest

    root, why = _fetch()
    if root is None:
        pytest.skip(why)
    return root


def require_logwatch() -> Path:
    """The unpacked root (perl is there to run logwatch), or skip the calling test."""
    import pytest

    if shutil.which("perl") is None:
        pytest.skip("logwatch's scripts need perl")
    return require_fail2ban()


def _text(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


def fail2ban_hosts(root: Path, lines: Sequence[str], workdir: Path) -> list[str]:
    """The hosts of the lines the xinetd-fail filter matches, in order."""
    log = workdir / "fail2ban-input.log"
    log.write_text(_text(lines))
    done = subprocess.run(
        [sys.executable, str(root / FAIL2BAN_REGEX), "--out", "ip", str(log),
         str(root / XINETD_FAIL_FILTER)],
        capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C",
             "PYTHONPATH": str(root / FAIL2BAN_PACKAGES)})
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def logwatch_report(root: Path, lines: Sequence[str]) -> str:
    """What logwatch's `secure` script reports on the lines (as read from the log)."""
    done = subprocess.run(
        ["perl", "-I", str(root / LOGWATCH_LIB), str(root / LOGWATCH_SECURE)],
        input=_text(lines), capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C", **LOGWATCH_ENV})
    assert done.returncode == 0, done.stderr
    return done.stdout
