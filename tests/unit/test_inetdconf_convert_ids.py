"""`pyxinetd convert` gives blocks that share a service name ids of their own, so the
converted file loads with every block served (itox/xconv.pl give them one id)."""

from __future__ import annotations

from pathlib import Path

from pyxinetd.config import Severity, load
from pyxinetd.convert import convert

CAT = "/bin/cat"


def load_converted(tmp_path: Path, text: str) -> tuple[dict[str, str], list[str], list[str]]:
    result = convert(text, "inetd.conf")
    conf = tmp_path / "converted.conf"
    conf.write_text(result.text)
    config = load(str(conf))
    problems = [str(d) for d in config.diagnostics
                if d.severity in (Severity.WARNING, Severity.ERROR)]
    return ({s.id: s.name for s in config.services}, problems, result.problems())


def test_shared_names_get_ids_telling_them_apart(tmp_path: Path) -> None:
    ids, problems, reported = load_converted(tmp_path, (
        f"127.0.0.1:comsat dgram udp wait root {CAT} comsat\n"
        f"[::1]:comsat dgram udp6 wait root {CAT} comsat\n"
        f"time stream tcp nowait nobody {CAT} cat\n"
        f"time dgram udp wait nobody {CAT} cat\n"
        "127.0.0.1:daytime stream tcp nowait root internal\n"
        "127.0.0.2:daytime stream tcp nowait root internal\n"
        f"finger stream tcp nowait nobody {CAT} cat\n"))
    assert problems == [] and reported == []
    assert ids == {"comsat-udp": "comsat", "comsat-udp6": "comsat", "time-stream": "time",
                   "time-dgram": "time", "daytime-stream-127.0.0.1": "daytime",
                   "daytime-stream-127.0.0.2": "daytime", "finger": "finger"}


def test_a_name_alone_keeps_the_default_id() -> None:
    text = convert(f"finger stream tcp nowait nobody {CAT} cat\n"
                   "echo stream tcp nowait root internal\n").text
    assert text.count("\tid ") == 1 and "id              = echo-stream" in text


def test_entries_on_one_socket_are_numbered_and_reported(tmp_path: Path) -> None:
    ids, problems, reported = load_converted(tmp_path, (
        f"time stream tcp nowait nobody {CAT} cat\n"
        f"time stream tcp nowait nobody {CAT} cat -x\n"))
    assert set(ids) == {"time"}
    assert any("inetd.conf:2:" in p and "entry of line 1" in p and "only the first" in p
               for p in reported), reported
    assert "id              = time-2" in convert(
        f"time stream tcp nowait nobody {CAT} cat\n"
        f"time stream tcp nowait nobody {CAT} cat -x\n").text
    assert len(problems) == 1 and "identical" in problems[0]


def test_generated_ids_do_not_take_another_services_name() -> None:
    text = convert(f"time stream tcp nowait nobody {CAT} cat\n"
                   f"time dgram udp wait nobody {CAT} cat\n"
                   f"time-stream stream tcp nowait nobody {CAT} cat\n").text
    assert "id              = time-stream-2" in text and "id              = time-dgram" in text


def test_entries_on_one_port_are_reported_whatever_their_ids(tmp_path: Path) -> None:
    # A builtin and an external server of one name, and a tcp line with a tcp6 line that
    # is no twin of it (other arguments): each pair listens on one socket; xinetd binds
    # the first only, and check disables the second.
    ids, problems, reported = load_converted(tmp_path, (
        "daytime stream tcp nowait root internal\n"
        f"daytime stream tcp nowait nobody {CAT} cat\n"
        f"finger stream tcp nowait nobody {CAT} cat -a\n"
        f"finger stream tcp6 nowait nobody {CAT} cat -b\n"
        # These share no socket: an IPv4-only and an IPv6-only one; an address of one
        # family and the other family's wildcard.
        f"smtp stream tcp4 nowait nobody {CAT} cat -a\n"
        f"smtp stream tcp6 nowait nobody {CAT} cat -b\n"
        f"127.0.0.1:ftp stream tcp nowait nobody {CAT} cat -a\n"
        f"ftp stream tcp6 nowait nobody {CAT} cat -b\n"))
    overlaps = sorted(p.split(":")[1] for p in reported if "only the first" in p)
    assert overlaps == ["2", "4"], reported
    assert "entry of line 1" in reported[0] and "entry of line 3" in reported[1]
    # The IPv6-only ftp beside the bound IPv4 one is kept, with the word that xinetd
    # would disable it (its uniqueness test looks at the bound one's port alone).
    kept = [p for p in problems if "is kept beside" in p]
    assert len(kept) == 1 and "id: ftp-tcp6 is kept beside service: ftp id: ftp-tcp" in kept[0]
    clashes = [p for p in problems if p not in kept]
    assert len(clashes) == 2 and all("DISABLING" in p for p in clashes), problems
    assert {"smtp-tcp4", "smtp-tcp6", "ftp-tcp", "ftp-tcp6"} <= set(ids)


def test_the_documented_example_converts_as_shown() -> None:
    # docs/inetd-conf.md, `pyxinetd convert`: the entry shown, converted with the
    # --daemon-dir shown, gives the block shown, byte for byte.
    text = (Path(__file__).resolve().parents[2] / "docs" / "inetd-conf.md").read_text()
    section = text.split("## `pyxinetd convert`", 1)[1]
    blocks = section.split("```\n")[1::2]     # the fenced blocks' contents
    commands, entry, block = blocks[0], blocks[1], blocks[2]
    assert "--daemon-dir /usr/sbin" in commands and "with `--daemon-dir /usr/sbin`" in section
    result = convert(entry, "inetd.conf", daemon_dir="/usr/sbin")
    assert result.problems() == []
    assert block in result.text


def test_a_twin_whose_line_cannot_be_served_is_converted_as_its_own(tmp_path: Path) -> None:
    # The dual-stack `tcp` line shares the IPv4 port of the `tcp4` line before it, so
    # it is not served, and its `tcp6` twin is served on its own: by -inetd_compat, and
    # so by the converted file (before, the twin was folded into the unserved line and
    # IPv6 clients lost the service after conversion).
    text = ("daytime stream tcp4 nowait root internal\n"
            "daytime stream tcp nowait root internal\n"
            "daytime stream tcp6 nowait root internal\n")
    ids, problems, reported = load_converted(tmp_path, text)
    assert sorted(ids) == ["daytime-stream-tcp4", "daytime-stream-tcp6"]
    assert [p for p in reported if "only the first" in p] == [
        "inetd.conf:2: warning: service daytime listens on the port and protocol of the "
        "entry of line 1, on the same or an overlapping address: only the first can be "
        "served"]
    assert "inetd.conf:3: info: daytime/tcp6 is a service of its own (IPv6 only): line 2, " \
           "whose dual-stack socket would serve it, is not served" in reported
    compat = tmp_path / "inetd.conf"
    compat.write_text(text)
    main = tmp_path / "xinetd.conf"
    main.write_text("defaults\n{\n}\n")
    served = load(str(main), inetd_compat=True, inetd_path=str(compat)).services
    assert sorted((s.socket_type, s.protocol, s.family, s.v6only) for s in served) == sorted(
        (s.socket_type, s.protocol, s.family, s.v6only)
        for s in load(str(tmp_path / "converted.conf")).services)


def test_a_twin_whose_line_is_served_is_folded_into_it(tmp_path: Path) -> None:
    ids, problems, reported = load_converted(tmp_path, (
        "daytime stream tcp nowait root internal\n"
        "daytime stream tcp6 nowait root internal\n"))
    assert list(ids) == ["daytime-stream"] and problems == []
    assert reported == ["inetd.conf:2: info: daytime/tcp6 is served by the dual-stack socket "
                        "of line 1 (tcp listens on IPv4 and IPv6 here); no separate service"]
