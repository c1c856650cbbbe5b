"""The DEBUG lines xinetd writes to its program log without `-d` too: `Reading included
configuration file: PATH`, for each file an `include` or `includedir` reads, and
`added service NAME` for each inetd.conf entry under `-inetd_compat` (checked against
xinetd 2.3.15.3, which writes them to `-filelog` and to syslog at LOG_DEBUG). They are how an
administrator sees which files a reload read, and in what order; so is `removing NAME`
for a service dropped for a failed attribute or left out of the defaults' `enabled` list.
pyxinetd wrote them only with `-d`. xinetd says nothing of `disable = yes` or the
`disabled` list: pyxinetd's `removing` line for those stays `-d`-only.
"""

from __future__ import annotations

from pathlib import Path

from tests.daemon import DaemonFactory, free_port


def echo(port: int, extra: str = "") -> str:
    return (f"service echo\n{{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
            f"\twait = no\n\tport = {port}\n\tbind = 127.0.0.1\n{extra}}}\n")


def test_included_files_are_announced_without_d(daemons: DaemonFactory,
                                                tmp_path: Path) -> None:
    folder = tmp_path / "xinetd.d"
    folder.mkdir()
    (folder / "one").write_text(echo(free_port()))
    (folder / "two").write_text(echo(free_port(), "\tdisable = yes\n").replace(
        "service echo", "service chargen"))
    daemon = daemons.start_config(f"defaults\n{{\n}}\nincludedir {folder}\n")
    log = daemon.log()
    assert (f"DEBUG: Reading included configuration file: {folder}/one "
            f"[file={daemon.log_path.with_suffix('.conf')}] [line=4]") in log
    assert f"DEBUG: Reading included configuration file: {folder}/two " in log
    assert log.index(f"{folder}/one") < log.index(f"{folder}/two") < log.index("Started working")
    # xinetd says nothing of a service with `disable = yes`.
    assert "removing" not in log


def test_services_xinetd_removes_are_named_without_d(daemons: DaemonFactory) -> None:
    conf = ("defaults\n{\n\tenabled = echo bad\n}\n" + echo(free_port())
            + echo(free_port(), "\tinstances = abc\n").replace("service echo", "service bad")
            + echo(free_port()).replace("service echo", "service left")
            + echo(free_port(), "\tdisable = yes\n").replace("service echo", "service off"))
    log = daemons.start_config(conf).log()
    assert "DEBUG: removing bad: bad attribute value: " in log
    assert "DEBUG: removing left: id left is not in the defaults' enabled list " in log
    assert "removing off" not in log
