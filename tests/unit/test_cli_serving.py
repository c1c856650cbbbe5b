"""xinetd's command line: single-dash words, unknown ones ignored, usage errors exit 1."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pyxinetd.options import UsageError, parse_serving_args


def test_all_options() -> None:
    options, seen, warnings = parse_serving_args(
        ["-d", "-f", "x.conf", "-filelog", "l", "-pidfile", "p", "-dontfork", "-stayalive",
         "-limit", "7", "-logprocs", "3", "-cc", "5", "-inetd_compat", "-reuse",
         "-shutdownprocs", "2", "-inetd_ipv6"])
    assert options.debug and options.dontfork and options.stayalive and options.inetd_compat
    assert (options.config_path, options.filelog, options.pidfile) == ("x.conf", "l", "p")
    assert (options.process_limit, options.logprocs, options.cc_interval) == (7, 3, 5)
    assert "-shutdownprocs" in seen
    assert warnings == ["The shutdownprocs option has been deprecated.",
                        "pyxinetd: ignoring unknown option -inetd_ipv6"]


def test_numbers_as_xinetd_reads_them() -> None:
    options, _, _ = parse_serving_args(["-limit", "+5", "-logprocs", " 7", "-cc", "05"])
    assert (options.process_limit, options.logprocs, options.cc_interval) == (5, 7, 5)


def test_the_largest_numbers_xinetd_takes() -> None:
    options, _, _ = parse_serving_args(["-limit", "18446744073709551615", "-logprocs",
                                        "18446744073709551615", "-cc", "2147483647"])
    assert options.process_limit == options.logprocs == 2**64 - 1
    assert options.cc_interval == 2**31 - 1


def test_zero_limit_and_cc_mean_none() -> None:
    # xinetd tests `if (process_limit)`: -limit 0 is no limit, not "refuse everything".
    options, _, _ = parse_serving_args(["-limit", "0", "-cc", "0"])
    assert options.process_limit is None and options.cc_interval is None


@pytest.mark.parametrize("args", [
    ["positional"], ["-f"], ["-limit", "many"], ["-limit", "-1"],
    # xinetd reads numbers with strtol and an end check: no `_`, no trailing blank,
    # no other digits than ASCII ones, no hexadecimal.
    ["-limit", "1_0"], ["-limit", "5 "], ["-limit", "\u0663"], ["-cc", "0x10"],
    ["-filelog", "a", "-syslog", "daemon"], ["-dontfork", "extra"],
    # Beyond an unsigned long: xinetd's strtoul reports ERANGE.
    ["-limit", "18446744073709551616"], ["-logprocs", "18446744073709551616"],
])
def test_usage_errors(args: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_serving_args(args)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyxinetd", *args], capture_output=True,
                          text=True, timeout=60)


def test_help_names_every_serving_option() -> None:
    # The usage line of a usage error is xinetd's, which leaves out -dontfork and the
    # other flags; --help is where a user looks for them.
    out = run("-h")
    assert out.returncode == 0
    words = set(out.stdout.replace("[", " ").replace("]", " ").split())
    options = ["-d", "-f", "-filelog", "-syslog", "-reuse", "-limit", "-pidfile",
               "-logprocs", "-shutdownprocs", "-cc", "-dontfork", "-stayalive",
               "-inetd_compat", "-version"]
    missing = [option for option in options if option not in words]
    assert missing == []


def test_version_goes_to_stderr() -> None:
    out = run("-version")
    assert out.returncode == 0
    assert "2.3.15.3" in out.stderr and out.stdout == ""


@pytest.mark.parametrize("args", [
    ["-version", "positional"], ["-version", "-limit", "many"],
    ["-version", "-filelog", "a", "-syslog", "daemon"], ["-d", "-version", "-f"],
])
def test_version_ends_the_parsing_where_it_stands(args: list[str]) -> None:
    # xinetd prints the version and exits 0 when it reaches -version: later words,
    # even bad ones, are never looked at.
    out = run(*args)
    assert out.returncode == 0, out.stderr
    assert "2.3.15.3" in out.stderr and "Usage" not in out.stderr


def test_shutdownprocs_argument_is_not_a_number_and_its_message_comes_in_order() -> None:
    # xinetd skips -shutdownprocs' argument unread and prints its message on the spot.
    out = run("-shutdownprocs", "any", "-version")
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines()[0] == "The shutdownprocs option has been deprecated."
    assert "2.3.15.3" in out.stderr.splitlines()[1]
    assert "deprecated" not in run("-version", "-shutdownprocs", "1").stderr


def test_usage_error_exits_1_with_usage_line() -> None:
    out = run("-limit")
    assert out.returncode == 1
    assert "Usage: pyxinetd [-d] [-f config_file]" in out.stderr


def test_unreadable_config_exits_1(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "log"
    out = run("-f", str(tmp_path / "missing.conf"), "-dontfork", "-filelog", str(log))
    assert out.returncode == 1
    assert "couldn't get configuration" in log.read_text()
