"""Host names in only_from/no_access that do not resolve are reported at load, at the
line that wrote them, in xinetd's words (`failed to parse NAME`), and kept.

`pyxinetd check` runs in a private mount namespace whose /etc/hosts and
/etc/nsswitch.conf (`hosts: files`) are the test's: the names resolve, or not, without
asking any DNS server.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import namespace_problem

pytestmark = pytest.mark.skipif(namespace_problem("mount") is not None,
                                reason=str(namespace_problem("mount")))

CONF = """defaults
{
	only_from = known.example typo.example 127.0.0.1
}
service lists
{
	type = UNLISTED
	port = 7777
	socket_type = stream
	wait = no
	user = nobody
	server = /bin/echo
	no_access = 127.0.0.3 evil.example typo.example
}
"""


def check(tmp_path: Path, text: str = CONF) -> str:
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n127.0.0.5 known.example\n"
                                    "127.0.0.3 multi\n127.0.0.4 multi\n::1 six\n")
    (tmp_path / "nsswitch.conf").write_text("hosts: files\n")
    conf = tmp_path / "lists.conf"
    conf.write_text(text)
    script = (f"mount --bind {tmp_path / 'hosts'} /etc/hosts && "
              f"mount --bind {tmp_path / 'nsswitch.conf'} /etc/nsswitch.conf && "
              f"exec {sys.executable} -m pyxinetd check -f {conf}")
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=120, check=False)
    return done.stdout + done.stderr


def test_names_that_do_not_resolve_are_warned_about_once_at_their_first_line(
        tmp_path: Path) -> None:
    out = check(tmp_path)
    assert (f"{tmp_path / 'lists.conf'}:3: warning: failed to parse typo.example (defaults: "
            "the name does not resolve now (") in out, out
    assert (f"{tmp_path / 'lists.conf'}:13: warning: failed to parse evil.example (service "
            "lists: the name does not resolve now (") in out, out
    assert out.count("failed to parse typo.example") == 1, out
    assert "failed to parse known.example" not in out
    # Kept: a warning, the service activated.
    assert "1 service(s) to activate, 0 dropped, 2 warning(s), 0 error(s)" in out, out


def _bound(flags: str) -> str:
    return ("service multi\n{\n\ttype = UNLISTED\n\tport = 7777\n\tsocket_type = stream\n"
            f"\twait = no\n\tuser = nobody\n\tserver = /bin/echo\n\tbind = multi\n{flags}}}\n")


@pytest.mark.parametrize("flags, xinetd", [
    # xinetd looks a name with several addresses up again for the IPv6 family (no
    # flags) and finds none: it drops the service.
    ("", "drops the service: bad address given for: multi"),
    ("\tflags = IPv6\n", "drops the service: bad address given for: multi")])
def test_a_bind_name_without_an_address_of_the_family_says_what_xinetd_does(
        tmp_path: Path, flags: str, xinetd: str) -> None:
    out = check(tmp_path, _bound(flags))
    assert "has no IPv6 address; bound to 127.0.0.3 regardless" in out, out
    assert f"(xinetd 2.3.15.3 {xinetd})" in out, out


def test_a_bind_name_with_several_addresses_of_its_family_names_the_one_bound(
        tmp_path: Path) -> None:
    out = check(tmp_path, _bound("\tflags = IPv4\n"))
    assert ("bind host multi has 2 IPv4 addresses (127.0.0.3, 127.0.0.4); the service "
            "listens on 127.0.0.3 only") in out, out
    assert "regardless" not in out
