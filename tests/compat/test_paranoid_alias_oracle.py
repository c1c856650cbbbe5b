"""hosts.deny `ALL: PARANOID` and a client whose reverse name is an alias, side by side
with the real xinetd 2.3.15.3 (tests/helpers/ipv6_scenario.py: one namespace per
daemon, the same /etc/hosts and tables).

libwrap confirms a reverse name with a forward lookup whose canonical name must be
that name (ignoring case; `localhost` excepted): an alias, a second name of an
/etc/hosts line or a DNS CNAME, is a "host name/name mismatch", PARANOID, even when
the forward lookup gives the client's address back. pyxinetd checked the address only
and served such clients.
"""

from __future__ import annotations

from pathlib import Path

from tests.compat.test_ipv6_oracle import comparable
from tests.integration.ipv6_support import needs_namespace, run_plan, service
from tests.oracle import require_xinetd

pytestmark = needs_namespace

SERVED = service("probe", 7420, "    socket_type = stream\n    wait = no\n    user = root\n"
                                 "    server = /bin/echo\n    server_args = served\n")


def plan(hosts: str, client: str) -> dict[str, object]:
    return {"hosts": hosts, "conf": SERVED,
            "etc": {"hosts.allow": "", "hosts.deny": "ALL: PARANOID\n"},
            "links": [["addr", "add", f"{client}/8", "dev", "lo"]] if client != "127.0.0.1"
            else [],
            "probes": [{"proto": "tcp", "src": client, "dst": "127.0.0.1", "port": 7420,
                        "until": "\n"}]}


def run_both(tmp_path: Path, hosts: str, client: str = "127.0.0.1"
             ) -> tuple[dict[str, object], dict[str, object]]:
    xinetd = require_xinetd()
    return (comparable(run_plan(tmp_path / "xinetd", plan(hosts, client), xinetd)),
            comparable(run_plan(tmp_path / "pyxinetd", plan(hosts, client))))


def test_a_reverse_name_that_is_an_alias_is_paranoid(tmp_path: Path) -> None:
    # 127.0.0.1's name is shared.test, whose forward lookup's canonical name is
    # canon.test (the first line naming it), with 127.0.0.1 among its addresses.
    theirs, ours = run_both(tmp_path, "127.0.0.6 canon.test shared.test\n"
                                      "127.0.0.1 shared.test\n::1 localhost\n")
    assert theirs["replies"][0]["reply"] == "", theirs
    assert ours == theirs


def test_a_canonical_reverse_name_is_served(tmp_path: Path) -> None:
    theirs, ours = run_both(tmp_path, "127.0.0.1 Good.test good-alias\n::1 localhost\n")
    assert theirs["replies"][0]["reply"] == "served\n", theirs
    assert ours == theirs
