"""The bytes a `banners` option sends, against Debian's libwrap itself.

tests/helpers/libwrap_banner_probe.py hands libwrap one end of a socket pair as the
request's descriptor and prints what it wrote there; pyxinetd's side is the gate's
own reading of the file (banner_lines) and `%` expansion for the same request. Files
an admin may have: a latin-1 text, a leading NUL (rlogin's protocol starts with
one), CRLF lines, a `%` before the newline or at the end, a line longer than libwrap's
buffer; and several `banners` options on one rule.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pyxinetd.access.hostsbanners import banner_lines
from pyxinetd.access.hostsoptions import expand
from pyxinetd.access.hostspatterns import Endpoint, Request
from tests.compat.test_libwrap_oracle import libwrap

PROBE = Path(__file__).resolve().parents[1] / "helpers" / "libwrap_banner_probe.py"

FILES = [
    b"hello %d from %a (%h) 100%%\n",
    b"caf\xe9 \xc3\xa9t\xc3\xa9\n",                 # latin-1, then UTF-8
    b"\0\0after two NULs\n",
    b"dos\r\nunix\nno newline at the end %a",
    b"100%\nunknown %z letter\nends with %",
    b"cut at a NUL\0 the rest\nnext line\n",
    b"x" * 8189 + b"%d\n",                       # the `%` ends libwrap's first piece
    b"x" * 8188 + b"%d\n",
    b"y" * 20000 + b"\n%d\n",
    b"",
    b"\0",
]


def ours(files: list[bytes]) -> bytes:
    request = Request("in.ftpd", Endpoint("10.0.0.5"))
    out = b""
    for raw in files:
        lead, lines = banner_lines(raw)
        out += lead + b"".join(expand(line, request).encode("latin-1") for line in lines)
    return out


def theirs(tmp_path: Path, allow: str) -> tuple[str, bytes]:
    (tmp_path / "allow").write_text(allow)
    (tmp_path / "deny").write_text("")
    done = subprocess.run(
        [sys.executable, str(PROBE), str(libwrap()), str(tmp_path / "allow"),
         str(tmp_path / "deny"), "in.ftpd", "10.0.0.5"],
        capture_output=True, text=True, timeout=30, check=True, cwd=tmp_path)
    verdict, sent = done.stdout.split("\n")[:2]
    return verdict, bytes.fromhex(sent)


@pytest.mark.parametrize("raw", FILES, ids=range(len(FILES)))
def test_a_banner_file_is_sent_as_libwrap_sends_it(raw: bytes, tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "in.ftpd").write_bytes(raw)
    verdict, sent = theirs(tmp_path, f"in.ftpd: ALL: banners {tmp_path / 'b'}\n")
    assert verdict == "granted"
    assert ours([raw]) == sent


def test_several_banners_options_send_every_file_in_order(tmp_path: Path) -> None:
    for folder, raw in (("b1", b"one\n"), ("b2", b"two %d\n")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "in.ftpd").write_bytes(raw)
    b1, b2 = tmp_path / "b1", tmp_path / "b2"
    verdict, sent = theirs(tmp_path, f"in.ftpd: ALL: banners {b1}: banners {b2}:"
                                     f" banners {tmp_path / 'none'}: banners={b1}: deny\n")
    assert verdict == "denied"
    assert sent == b"one\r\ntwo in.ftpd\r\none\r\n" == ours([b"one\n", b"two %d\n", b"one\n"])
