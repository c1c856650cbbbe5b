"""`python -m pyxinetd` runs the same command line as the `pyxinetd` script."""

from pyxinetd.cli import main

if __name__ == "__main__":
    main()
