"""Run a Master on services built in a test (no configuration loader involved).

Usage: python run_master.py SPEC.pickle, where the pickle holds
(list[ServiceConfig], MasterOptions), or (PATH, MasterOptions) to serve a configuration
file as the command line does but with any options (the command line the tests use runs
-dontfork, which implies -stayalive). The program log goes to options.filelog.
"""

from __future__ import annotations

import pickle
import sys

from pyxinetd.config import load
from pyxinetd.config.model import Configuration, Defaults
from pyxinetd.log import ProgramLog
from pyxinetd.master import Master


def main() -> int:
    with open(sys.argv[1], "rb") as f:
        services, options = pickle.load(f)
    if isinstance(services, str):
        config = load(services)
    else:
        config = Configuration(path="<test>", defaults=Defaults(), services=tuple(services))
    program = ProgramLog.to_file(options.filelog, debug=options.debug)
    try:
        return Master(config, options, program_log=program).run()
    finally:
        program.close()


if __name__ == "__main__":
    sys.exit(main())
