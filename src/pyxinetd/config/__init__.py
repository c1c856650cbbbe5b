"""Configuration loading: `load(path)` is the single public entry point."""

from __future__ import annotations

from pyxinetd.config.diagnostics import Diagnostic, Severity
from pyxinetd.config.model import Configuration, Defaults, DroppedEntry, ServiceConfig

__all__ = ["Configuration", "Defaults", "Diagnostic", "DroppedEntry", "ServiceConfig",
           "Severity", "load"]


def load(path: str, environ: dict[str, str] | None = None, inetd_compat: bool = False,
         inetd_path: str = "/etc/inetd.conf", *, check_host_names: bool = True
         ) -> Configuration:
    """Read `path` and everything it includes; never raises for bad configuration text.

    Raises ConfigError only when the main file itself cannot be read. `environ` is
    the daemon's start-up environment (default: os.environ) used for passenv. With
    `inetd_compat`, the services of `inetd_path` are appended after all xinetd files
    (an unreadable inetd.conf is a warning, as for xinetd's -inetd_compat).
    `check_host_names`: look the address lists' host names up, on threads, for a
    warning about those that do not resolve (pyxinetd.config.hostnames); not in a
    process that forks later (the daemon's own load, when no loader child could be
    made): a thread stuck in the resolver there would hold its locks in the children.
    """
    from pyxinetd.config.loader import load_configuration
    from pyxinetd.config.lookups import Lookups

    return load_configuration(path, environ=environ, inetd_compat=inetd_compat,
                              inetd_path=inetd_path,
                              lookups=Lookups(check_host_names=check_host_names))
