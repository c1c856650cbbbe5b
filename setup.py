"""Only the optional C extension; everything else is in pyproject.toml.

pyxinetd._spawn (src/pyxinetd/_spawn.c) makes servers that switch user start at vfork
speed. It is optional: without a compiler or Python headers (or off Linux) the build
warns and goes on, and the spawner uses its Python-level paths.
"""

import sys

from setuptools import Extension, setup

ext_modules = []
if sys.platform.startswith("linux"):
    ext_modules.append(Extension("pyxinetd._spawn", sources=["src/pyxinetd/_spawn.c"],
                                 optional=True))

setup(ext_modules=ext_modules)
