"""load_isolated() gives exactly what load() gives, with shared values, and leaves no child.

A sample of the real-world corpus keeps the run short; the daemon's own tests (start-up
and reload) use load_isolated() on every configuration they serve.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import pytest

from pyxinetd.config import load
from pyxinetd import installation
from pyxinetd.config.isolated import SENT, compact, load_isolated, receive, start_loader
from pyxinetd.config.model import Configuration, Defaults, ServiceConfig
from pyxinetd.errors import ConfigError
from tests.compat.corpus import corpus_cases, enable_all
from tests.helpers.procs import children_of

ENV = {"PATH": "/usr/bin:/bin", "TZ": "UTC"}
VALID = sorted((Path(__file__).resolve().parents[1] / "data" / "conf" / "valid").glob("*.conf"))
CORPUS = [case.source for case in corpus_cases()][::15]


def _children() -> set[int]:
    """Pids of this process's children, zombies included (never reaps anyone's); a
    thread of the test process that ends while they are read is skipped."""
    return set(children_of(os.getpid()))


def _same(a: object, b: object) -> bool:
    """Equal, and of the same types all the way down (True == 1 in Python)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))  # type: ignore[arg-type]
    if isinstance(a, frozenset):
        return a == b and sorted(map(repr, a)) == sorted(map(repr, b))  # type: ignore[arg-type]
    if dataclasses.is_dataclass(a):
        return all(_same(getattr(a, f.name), getattr(b, f.name))
                   for f in dataclasses.fields(a))
    return bool(a == b)


@pytest.mark.parametrize("path", VALID + CORPUS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_same_configuration_as_load(path: Path, tmp_path: Path) -> None:
    main = tmp_path / "main"
    main.write_bytes(enable_all(path.read_bytes()))
    expected = load(str(main), environ=ENV)
    before = _children()
    got = load_isolated(str(main), environ=ENV)
    assert _children() <= before
    assert got == expected
    assert _same(got, expected)


def test_equal_values_are_shared_between_services(tmp_path: Path) -> None:
    block = """service s{n}
{{
    type = UNLISTED
    socket_type = stream
    protocol = tcp
    wait = no
    user = root
    server = /bin/echo
    server_args = hello
    port = {port}
    log_on_success = PID HOST
}}
"""
    main = tmp_path / "main"
    main.write_text("".join(block.format(n=n, port=20000 + n) for n in range(3)))
    config = load_isolated(str(main), environ=ENV)
    a, b, c = config.services
    for name in ("types", "flags", "server_argv", "environment", "log_on_success", "cps"):
        assert getattr(a, name) is getattr(b, name) is getattr(c, name), name
    assert a.port != b.port


def test_sharing_never_changes_a_type() -> None:
    # 1 == True and 0 == 0.0: a naive intern table would hand one service the other's.
    from tests.factories import make_service

    one = make_service(name="a", id="a", cps=(1, 0))
    other = make_service(name="b", id="b", cps=(True, False))
    config = Configuration(path="x", defaults=Defaults(), services=(one, other))
    shared = compact(config)
    assert shared == config
    assert type(shared.services[0].cps[0]) is int
    assert type(shared.services[1].cps[0]) is bool


def test_result_pickles_with_slots() -> None:
    from tests.factories import make_service

    svc = make_service()
    assert isinstance(svc, ServiceConfig)
    assert pickle.loads(pickle.dumps(svc)) == svc
    assert dataclasses.replace(svc, port=7).port == 7


def test_unreadable_main_file_raises_as_load_does(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.conf")
    with pytest.raises(ConfigError) as direct:
        load(missing)
    before = _children()
    with pytest.raises(ConfigError) as isolated:
        load_isolated(missing)
    assert _children() <= before
    assert str(isolated.value) == str(direct.value)
    assert (isolated.value.path, isolated.value.line) == (direct.value.path, direct.value.line)


def test_a_reinstall_of_the_same_files_is_learned_by_the_daemon_not_only_the_loader(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The record of a package whose file is then rewritten with the same contents, as
    # a reinstall does: the loader child sees it is the same code and loads; the new
    # stamps are the daemon's now, so the next reload's check reads no file again.
    folder = tmp_path / "pyxinetd"
    folder.mkdir()
    init = folder / "__init__.py"
    init.write_text('__version__ = "1.0"\n')
    recorded = installation.Installation.read(str(folder), "1.0")
    monkeypatch.setattr(installation, "_recorded", recorded)
    stamp = init.stat().st_mtime_ns + 1_000_000
    os.utime(init, ns=(stamp, stamp))
    conf = tmp_path / "xinetd.conf"
    conf.write_text("defaults\n{\n}\n")
    child = start_loader(str(conf))
    os.set_blocking(child.fd, True)
    with os.fdopen(child.fd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(child.pid, 0)
    assert receive(data, os.WIFEXITED(status) and os.WEXITSTATUS(status) == SENT)
    assert recorded.stamps == installation.Installation.read(str(folder), "1.0").stamps
