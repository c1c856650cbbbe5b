"""pyxinetd: a drop-in replacement for xinetd, the Internet super-daemon."""

__version__ = "0.1.0"

# The xinetd release whose behaviour pyxinetd reproduces.
XINETD_COMPAT_VERSION = "2.3.15.3"
