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
    here = os.path.dirname(os.path.abspath(__file__))
    # Python puts this file's folder (pyxinetd/access) first on the path, unless told
    # not to (-P, PYTHONSAFEPATH): drop it where it is there, and put the package's
    # parent first in any case.
    if sys.path and sys.path[0] and os.path.abspath(sys.path[0]) == here:
        del sys.path[0]
    sys.path.insert(0, os.path.dirname(os.path.dirname(here)))
    from pyxinetd.access.resolverhelper import main
    main()
