"""XINETD_BIND_DELAY read as xinetd 2.3.15.3 reads it (pyxinetd.listener.bind_delay).

Measured on the real binary with a port held busy: `500000` pauses 0.5 s between the
11 attempts, `500001` and `1000000` do not pause at all, `20000abc` pauses 20 ms
(atoi reads the leading digits), `1e5` is 1 µs.
"""

from __future__ import annotations

import pytest

from pyxinetd.listener import BIND_DELAY_ENV, bind_delay


@pytest.mark.parametrize(("text", "seconds"), [
    ("100000", 0.1),
    ("500000", 0.5),
    (" +50000", 0.05),
    ("20000abc", 0.02),     # the leading digits, as atoi()
    ("1e5", 0.000001),
    ("100_000", 0.0001),    # Python's int() would read 100000
])
def test_a_delay_in_range_is_used(text: str, seconds: float) -> None:
    assert bind_delay({BIND_DELAY_ENV: text}) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["500001", "1000000", "0", "-5", "abc", "", "0x10"])
def test_a_delay_out_of_range_means_no_pause(text: str) -> None:
    # xinetd ignores a value over 500000 instead of capping it.
    assert bind_delay({BIND_DELAY_ENV: text}) == 0.0


def test_no_variable_means_no_pause() -> None:
    assert bind_delay({}) == 0.0
