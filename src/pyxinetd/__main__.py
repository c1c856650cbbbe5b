"""The `pyxinetd` command: `python3 -m pyxinetd` and the installed script run this.

The signals the daemon handles are held before the rest of it is imported (most of a
second on a slow host): as process 1 of a container, a signal whose action is still the
default one is dropped by the kernel, and a `docker stop` arriving then was lost
(pyxinetd.signals.hold_until_installed).
"""

import os

# Written without building anything: there may be no memory left for it.
_OUT_OF_MEMORY = (b"pyxinetd: out of memory (is the address space limit, ulimit -v, "
                  b"too small?)\n")


def main() -> None:
    try:
        from pyxinetd.signals import hold_until_installed
        hold_until_installed()
        from pyxinetd.cli import main as command_line
        command_line()
    except MemoryError:
        # Under a small address space limit (an appliance's ulimit -v) the imports or
        # the configuration run out of memory: one line, not a traceback.
        try:
            os.write(2, _OUT_OF_MEMORY)
        except OSError:
            pass
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
