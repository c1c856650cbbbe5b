"""The command line: xinetd's own options, plus `pyxinetd check`.

This is the only module that prints to the terminal or chooses an exit status.
"""

from __future__ import annotations

import sys

import click

from pyxinetd import XINETD_COMPAT_VERSION, __version__

DEFAULT_CONFIG = "/etc/xinetd.conf"


@click.group(invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-f", "config_file", default=DEFAULT_CONFIG, show_default=True,
              metavar="FILE", help="Configuration file.")
@click.option("-dontfork", "dontfork", is_flag=True,
              help="Stay in the foreground (implies -stayalive).")
@click.pass_context
def cli(ctx: click.Context, config_file: str, dontfork: bool) -> None:
    """pyxinetd: the Internet super-daemon, compatible with xinetd."""
    if ctx.invoked_subcommand is not None:
        return
    click.echo("pyxinetd: serving is not implemented yet", err=True)
    ctx.exit(1)


@cli.command()
@click.option("-f", "--file", "config_file", default=DEFAULT_CONFIG, show_default=True,
              metavar="FILE", help="Configuration file to check.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (docs/check-json.md).")
def check(config_file: str, as_json: bool) -> None:
    """Load the configuration, print what would be served and every diagnostic."""
    from pyxinetd.check import run_check

    output, status = run_check(config_file, as_json=as_json)
    click.echo(output, nl=not output.endswith("\n"))
    sys.exit(status)


def main() -> None:
    cli(prog_name="pyxinetd")


__all__ = ["main", "cli", "XINETD_COMPAT_VERSION", "__version__"]
