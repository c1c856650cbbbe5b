"""The name resolver helper's entry point, run by its path (pyxinetd.access.resolver).

The helper is a new interpreter, which would look pyxinetd up on its module search path
again: with two installations (pip's in /usr/local over the distribution's, a venv with
system site packages over the system's) an earlier folder could give it another
pyxinetd than the daemon's, whose files the installation check (pyxinetd.installation)
never looked at. Run as a script by its path, this file puts the folder that holds the
daemon's own package first on the path, so the helper is the daemon's code; `ps` shows
this file's path.
"""

import os
import sys

if __name__ == "__main__":
    # sys.path[0] is this file's folder (pyxinetd/access); the package's parent goes first.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from pyxinetd.access.resolverhelper import main
    main()
