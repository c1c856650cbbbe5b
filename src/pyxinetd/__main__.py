"""The `pyxinetd` command: `python3 -m pyxinetd` and the installed script run this.

The signals the daemon handles are held before the rest of it is imported (most of a
second on a slow host): as process 1 of a container, a signal whose action is still the
default one is dropped by the kernel, and a `docker stop` arriving then was lost
(pyxinetd.signals.hold_until_installed).
"""

from pyxinetd.signals import hold_until_installed


def main() -> None:
    hold_until_installed()
    from pyxinetd.cli import main as command_line
    command_line()


if __name__ == "__main__":
    main()
