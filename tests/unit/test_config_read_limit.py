"""A configuration file is read up to CONFIG_READ_LIMIT bytes (pyxinetd.config.includes):
a device named as the main file (`-f /dev/zero`, a symlink to one) was read without end,
taking the host's memory and, at start-up, the daemon with it."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pyxinetd.config import includes, load
from pyxinetd.errors import ConfigError


def test_an_endless_main_file_is_refused_as_too_large() -> None:
    with pytest.raises(ConfigError) as caught:
        load("/dev/zero")
    assert str(caught.value.message) == "open( /dev/zero ) failed: File too large (errno = 27)"


def test_a_file_over_the_limit_is_refused_and_one_at_it_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(includes, "CONFIG_READ_LIMIT", 100)
    at_limit, over = tmp_path / "at", tmp_path / "over"
    at_limit.write_bytes(b"#" * 99 + b"\n")
    over.write_bytes(b"#" * 100 + b"\n")
    assert includes.read_text(str(at_limit)) == "#" * 99 + "\n"
    assert includes.read_included_text(str(at_limit)) == "#" * 99 + "\n"
    for read in (includes.read_text, includes.read_included_text):
        with pytest.raises(OSError) as caught:
            read(str(over))
        assert caught.value.errno == errno.EFBIG
