"""Configuration loading: `load(path)` is the single public entry point."""

from __future__ import annotations

from pyxinetd.config.diagnostics import Diagnostic, Severity
from pyxinetd.config.model import Configuration, Defaults, DroppedEntry, ServiceConfig

__all__ = ["Configuration", "Defaults", "Diagnostic", "DroppedEntry", "ServiceConfig",
           "Severity", "load"]


def load(path: str, *, environ: dict[str, str] | None = None) -> Configuration:
    """Read `path` and everything it includes; never raises for bad configuration text.

    Raises ConfigError only when the main file itself cannot be read. `environ` is
    the daemon's start-up environment (default: os.environ) used for passenv.
    """
    from pyxinetd.config.loader import load_configuration

    return load_configuration(path, environ=environ)
