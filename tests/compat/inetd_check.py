"""Run inside the oracle's namespace (its `before` command): load /etc/inetd.conf two ways.

Prints one JSON object: `compat` is `check --json --inetd-compat` of the main file
given as argv[1]; `converted` is `check --json` of that main file plus the output of
`pyxinetd convert /etc/inetd.conf` (written under /tmp, a private tmpfs layer there).
Both see the same stub servers xinetd sees.
"""

from __future__ import annotations

import json
import sys
import traceback


def main() -> None:
    from pyxinetd.check import run_check
    from pyxinetd.convert import convert

    main_conf = sys.argv[1]
    out: dict[str, object] = {}
    try:
        text, _ = run_check(main_conf, as_json=True, inetd_compat=True)
        out["compat"] = json.loads(text)
        with open("/etc/inetd.conf", "rb") as handle:
            source = handle.read().decode("utf-8", errors="surrogateescape")
        converted = convert(source, "/etc/inetd.conf")
        with open("/tmp/converted.conf", "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(converted.text)
        with open(main_conf, encoding="utf-8") as f:
            main_text = f.read()
        with open("/tmp/main-converted.conf", "w", encoding="utf-8") as f:
            f.write(main_text + "\ninclude /tmp/converted.conf\n")
        text, _ = run_check("/tmp/main-converted.conf", as_json=True)
        out["converted"] = json.loads(text)
    except Exception:
        out["error"] = traceback.format_exc()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
