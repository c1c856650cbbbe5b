"""Bytes that are not UTF-8, in configuration files, file names, argv and the environment:
they go out as the bytes they are, as xinetd passes them, also when the daemon is started
in a locale that is not UTF-8 (ISO-8859-1, built with localedef into the test's folder
and found through LOCPATH), and messages show them as `\\xNN`.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import DaemonFactory, free_port, namespace_problem, wait_until
from tests.helpers.procs import children_of

LOCALE = "en_US.ISO-8859-1"


@pytest.fixture(scope="module")
def latin1_locale(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """`env` settings that start a command in an ISO-8859-1 locale."""
    if shutil.which("localedef") is None or not Path("/usr/share/i18n/locales/en_US").exists():
        pytest.skip("localedef or the en_US locale source is not installed")
    folder = tmp_path_factory.mktemp("locales")
    built = subprocess.run(["localedef", "-i", "en_US", "-f", "ISO-8859-1",
                            str(folder / LOCALE)], capture_output=True)
    if not (folder / LOCALE).is_dir():
        pytest.skip(f"localedef failed: {built.stderr.decode(errors='replace')}")
    return ["env", "-u", "LANG", "-u", "LC_CTYPE", f"LOCPATH={folder}", f"LC_ALL={LOCALE}"]


def read_to_end(sock: socket.socket) -> bytes:
    data = b""
    for _ in range(1000):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_utf8_server_path_arguments_and_env_reach_the_server_under_a_latin1_locale(
        daemons: DaemonFactory, tmp_path: Path, latin1_locale: list[str]) -> None:
    # A server path in UTF-8 was looked up under its Latin-1 encoding (service
    # disabled), and a character outside Latin-1 in server_args or env stopped the
    # listener with a UnicodeEncodeError.
    server = tmp_path / "c\u00e4t\u20ac"
    shutil.copy("/bin/cat", server)
    service_log = tmp_path / "svc\u20ac.log"
    port = free_port()
    daemon = daemons.start_config(
        "service cat\n{\n"
        f"  type = UNLISTED\n  port = {port}\n  socket_type = stream\n  wait = no\n"
        "  user = root\n  bind = 127.0.0.1\n"
        f"  server = {server}\n"
        "  server_args = /proc/self/cmdline /proc/self/environ\n"
        "  env = EURO=\u20ac\u00e9\n"
        f"  log_type = FILE {service_log}\n  log_on_success = PID\n}}\n",
        wrapper=latin1_locale)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        received = read_to_end(client)
    assert received.startswith(b"c\xc3\xa4t\xe2\x82\xac\0/proc/self/cmdline\0/proc/self/environ\0")
    assert b"\0EURO=\xe2\x82\xac\xc3\xa9\0" in received
    assert b"PYXINETD_MASK_AT_START" not in received
    wait_until(lambda: service_log.exists() and b"START: cat" in service_log.read_bytes(),
               what="the START line in the service log named in UTF-8")
    assert "not executable" not in daemon.log()


def test_latin1_file_name_is_logged_as_its_bytes_under_a_latin1_locale(
        daemons: DaemonFactory, tmp_path: Path, latin1_locale: list[str]) -> None:
    # The name was decoded as Latin-1 and written back in UTF-8 (`caf\xc3\xa9`), the
    # name of no file.
    folder = tmp_path / "included"
    folder.mkdir()
    (folder / "caf\udce9").write_bytes(b"bogus line\n")
    daemon = daemons.start_config(f"includedir {folder}\n", wrapper=latin1_locale)
    log = daemon.log_path.read_bytes()
    assert b"[file=" + bytes(folder) + b"/caf\xe9] [line=1]" in log


def test_a_stop_sent_to_process_one_while_it_starts_again_in_utf8_mode_is_not_lost(
        daemons: DaemonFactory, tmp_path: Path, latin1_locale: list[str]) -> None:
    # As process 1 of a container the kernel drops a signal whose action is the
    # default one. Nothing was held yet while the interpreter started again in UTF-8
    # mode: the SIGTERM of a `docker stop` then was lost and the daemon served on.
    # Here the second interpreter waits on a FIFO (its sitecustomize) while the
    # signal is sent.
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a pid namespace")
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os, sys\n"
        "if sys.flags.utf8_mode and os.getpid() == 1:\n"
        f"    open({str(gate)!r}).close()\n")
    python_path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    daemon = daemons.start_config(
        "service s\n{\n  type = UNLISTED\n  socket_type = stream\n  wait = no\n"
        f"  user = root\n  bind = 127.0.0.1\n  port = {free_port()}\n"
        "  server = /bin/echo\n}\n",
        ready=False,
        wrapper=[*latin1_locale, f"PYTHONPATH={python_path}",
                 "unshare", "-p", "-f", "--mount-proc", "--"])

    def open_gate() -> int | None:
        try:
            return os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            if err.errno != errno.ENXIO:    # the interpreter has not opened it yet
                raise
            return None

    writer = wait_until(open_gate, what="the interpreter started again to wait on the FIFO")
    [pid] = children_of(daemon.pid)
    os.kill(pid, signal.SIGTERM)
    os.close(writer)
    assert daemon.wait_exit() == 0
    log = daemon.log()
    assert "Started working" in log
    assert log.rstrip().endswith("WARNING: Exiting...")


def test_check_names_a_byte_that_is_not_utf8_by_its_hex_value(tmp_path: Path) -> None:
    # repr() showed the surrogate escape, `'bogus\udce9'`: no character of the file.
    conf = tmp_path / "latin1.conf"
    conf.write_bytes(b"service probe\n{\n  bogus\xe9 = 1\n}\n\xe9\xe9 junk\n")
    checked = subprocess.run([sys.executable, "-m", "pyxinetd", "check", "-f", str(conf)],
                             capture_output=True)
    out = checked.stdout + checked.stderr
    assert f"{conf}:3: warning: bad service attribute: 'bogus\\xe9'".encode() in out
    assert b"found '\\xe9\\xe9'" in out
    assert b"udc" not in out


def tcpmux_ask(port: int, line: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(line + b"\r\n")
        return read_to_end(client)


def test_tcpmux_finds_and_lists_service_names_by_their_bytes(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # The client's name was decoded as Latin-1 and the configuration's as UTF-8: no
    # non-ASCII name was ever found, and `help` listed `caf?`. xinetd compares bytes,
    # ignoring the case of ASCII letters only.
    port = free_port()
    services = tmp_path / "mux.conf"
    services.write_bytes(
        b"service tcpmux\n{\n  type = INTERNAL UNLISTED\n  protocol = tcp\n"
        b"  socket_type = stream\n  wait = no\n  user = root\n  bind = 127.0.0.1\n"
        b"  port = %d\n}\n" % port
        + b"".join(b"service %s\n{\n  type = UNLISTED TCPMUX\n  protocol = tcp\n"
                   b"  socket_type = stream\n  wait = no\n  user = root\n"
                   b"  server = /bin/echo\n  server_args = %s\n}\n" % (name, answer)
                   for name, answer in ((b"caf\xe9", b"latin1"), (b"t\xc3\xa9", b"utf8"))))
    daemons.start_config(f"include {services}\n")
    assert tcpmux_ask(port, b"caf\xe9") == b"latin1\n"
    assert tcpmux_ask(port, b"T\xc3\xa9") == b"utf8\n"
    assert tcpmux_ask(port, b"CAF\xc9") == b"-Service name not found\r\n"
    assert tcpmux_ask(port, b"help") == b"caf\xe9\r\nt\xc3\xa9\r\n"


def test_a_service_log_entry_cut_at_1024_bytes_keeps_a_latin1_byte(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # The cut encoded the entry with errors="replace": the Latin-1 byte became `?`,
    # although the same name in a shorter entry was written as it is.
    port = free_port()
    name = b"caf\xe9" + b"x" * 1100
    service_log = tmp_path / "services.log"
    services = tmp_path / "long.conf"
    services.write_bytes(
        b"service %s\n{\n  type = UNLISTED\n  protocol = tcp\n  port = %d\n"
        b"  socket_type = stream\n  wait = no\n  user = root\n  bind = 127.0.0.1\n"
        b"  server = /bin/true\n  log_type = FILE %s\n  log_on_success = PID\n}\n"
        % (name, port, bytes(service_log)))
    daemons.start_config(f"include {services}\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        read_to_end(client)
    wait_until(lambda: service_log.exists() and b"START: " in service_log.read_bytes(),
               what="the START line")
    entry = b"START: " + name
    assert b": " + entry[:1024] + b"\n" in service_log.read_bytes()


def test_a_service_log_entry_cut_inside_a_utf8_character_keeps_its_first_bytes(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # xinetd cuts the entry at its 1024th byte, whatever character that byte is part
    # of (`START: ` and 508 `é` are 1023 bytes: the 1024th is the first of the next
    # `é`); the cut dropped the whole character, one byte short of xinetd's line.
    port = free_port()
    service_log = tmp_path / "services.log"
    daemons.start_config(
        f"service {'é' * 600}\n{{\n  type = UNLISTED\n  protocol = tcp\n  port = {port}\n"
        "  socket_type = stream\n  wait = no\n  user = root\n  bind = 127.0.0.1\n"
        f"  server = /bin/true\n  log_type = FILE {service_log}\n  log_on_success = PID\n}}\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        read_to_end(client)
    wait_until(lambda: service_log.exists() and b"START: " in service_log.read_bytes(),
               what="the START line")
    assert b": START: " + "é".encode() * 508 + b"\xc3\n" in service_log.read_bytes()


def skip_without_mount_namespace() -> None:
    problem = namespace_problem("mount")
    if problem:
        pytest.skip(problem)


def with_hosts_file(hosts: Path) -> list[str]:
    """A wrapper running the daemon with `hosts` as /etc/hosts, in a private mount
    namespace; `exec` keeps the daemon's pid."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            f"mount --bind {hosts} /etc/hosts && exec \"$@\"", "sh"]


@pytest.mark.parametrize(("name", "shown"), [(b"h\xe9st", b"h_st"), (b"h\xc3\xa9st", b"h__st")])
def test_a_host_name_that_is_not_ascii_matches_hosts_allow_and_expands_byte_by_byte(
        daemons: DaemonFactory, tmp_path: Path, name: bytes, shown: bytes) -> None:
    # Python refused the Latin-1 name from the resolver (UnicodeDecodeError): the client
    # had no name, and the rule naming it never matched (libwrap matches it). libwrap
    # replaces each unsafe byte of an expansion with `_`: a UTF-8 `é` is two.
    skip_without_mount_namespace()
    hosts = tmp_path / "hosts"
    hosts.write_bytes(b"127.0.0.1\t" + name + b"\n")
    banners = tmp_path / "banners"
    banners.mkdir()
    (banners / "wrapped").write_bytes(b"hello %n\n")
    allow = tmp_path / "hosts.allow"
    allow.write_bytes(b"wrapped: " + name + b" : banners " + bytes(banners) + b"\n")
    deny = tmp_path / "hosts.deny"
    deny.write_bytes(b"wrapped: ALL\n")
    port = free_port()
    wrapper = ["env", f"PYXINETD_HOSTS_ALLOW={allow}", f"PYXINETD_HOSTS_DENY={deny}",
               *with_hosts_file(hosts)]
    daemons.start_config(
        "service wrapped\n{\n"
        f"  type = UNLISTED\n  port = {port}\n  socket_type = stream\n  wait = no\n"
        "  user = root\n  bind = 127.0.0.1\n  libwrap = wrapped\n  server = /bin/echo\n"
        "  server_args = served\n}\n",
        wrapper=wrapper)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        received = read_to_end(client)
    assert received == b"hello " + shown + b"\r\nserved\n"


def test_only_from_names_a_host_in_utf8_as_xinetd_does(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # xinetd looks the name's bytes up (getaddrinfo) and matches the client's name;
    # the token was taken for no host name at all (`failed to parse`, ignored), so
    # the only entry of only_from was dropped and nobody was let in.
    skip_without_mount_namespace()
    hosts = tmp_path / "hosts"
    hosts.write_bytes(b"127.0.0.1\tlocalhost\n127.0.0.2\tb\xc3\xbccher.example\n")
    port = free_port()
    daemon = daemons.start_config(
        "service s\n{\n  type = UNLISTED\n  socket_type = stream\n  wait = no\n"
        f"  user = root\n  bind = 127.0.0.1\n  port = {port}\n  server = /bin/echo\n"
        "  server_args = served\n  only_from = b\u00fccher.example\n}\n",
        wrapper=with_hosts_file(hosts))
    with socket.socket() as client:
        client.settimeout(10)
        client.bind(("127.0.0.2", 0))
        client.connect(("127.0.0.1", port))
        assert read_to_end(client) == b"served\n"
    assert "failed to parse" not in daemon.log()


def test_a_redirect_target_named_in_latin1_is_looked_up_by_its_bytes(
        daemons: DaemonFactory, tmp_path: Path) -> None:
    # The name went through Python's IDNA codec, which refused the byte: "does not
    # resolve", service disabled; xinetd passes the bytes to the resolver.
    skip_without_mount_namespace()
    hosts = tmp_path / "hosts"
    hosts.write_bytes(b"127.0.0.1\th\xe9st\n")
    with socket.create_server(("127.0.0.1", 0)) as target:
        port = free_port()
        services = tmp_path / "redirect.conf"
        services.write_bytes(
            b"service redir\n{\n  type = UNLISTED\n  port = %d\n  socket_type = stream\n"
            b"  wait = no\n  user = root\n  bind = h\xe9st\n  redirect = h\xe9st %d\n}\n"
            % (port, target.getsockname()[1]))
        daemon = daemons.start_config(f"include {services}\n",
                                      wrapper=with_hosts_file(hosts))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            target.settimeout(10)
            relayed, _ = target.accept()
            with relayed:
                relayed.sendall(b"from the target\n")
                relayed.shutdown(socket.SHUT_WR)
                assert read_to_end(client) == b"from the target\n"
    assert "does not resolve" not in daemon.log()


def blocked_signals(pid: int) -> set[int]:
    """The signals the process `pid` blocks, from its SigBlk line."""
    status = Path(f"/proc/{pid}/status").read_text()
    [line] = [line for line in status.splitlines() if line.startswith("SigBlk:")]
    mask = int(line.split()[1], 16)
    return {n for n in range(1, 65) if mask & (1 << (n - 1))}


def mask_of_a_command(tmp_path: Path, env: list[str]) -> set[int]:
    """The signal mask `pyxinetd convert` has once it opens its input (a FIFO), past
    the release of the start-up hold; its exit status must be 0."""
    fifo = tmp_path / "inetd.conf"
    os.mkfifo(fifo)
    proc = subprocess.Popen([*env, sys.executable, "-m", "pyxinetd", "convert", str(fifo)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    writer = None
    try:
        def open_fifo() -> int | None:
            try:
                return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as err:
                if err.errno != errno.ENXIO:    # not opened for reading yet
                    raise
                return None

        writer = wait_until(open_fifo, what="the command to open its input")
        mask = blocked_signals(proc.pid)
        os.close(writer)
        writer = None
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        return mask
    finally:
        if writer is not None:
            os.close(writer)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("value", ["15", "1:15", "99", "0", "x"])
def test_a_start_mask_variable_set_by_hand_is_not_taken(tmp_path: Path, value: str) -> None:
    # In UTF-8 mode (the C locale) the variable was trusted whoever set it: `15` left
    # SIGTERM blocked in the command, `99` or `0` ended it with a traceback.
    mask = mask_of_a_command(tmp_path, ["env", "LC_ALL=C",
                                        f"PYXINETD_MASK_AT_START={value}"])
    assert signal.SIGTERM not in mask
    assert not mask & {signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT}


def test_a_command_started_again_in_utf8_mode_gets_back_the_mask_it_started_with(
        tmp_path: Path, latin1_locale: list[str]) -> None:
    # Started with SIGUSR1 blocked: held across the exec with the rest, then given back
    # as it was, while SIGHUP, held only for the start, is let through again.
    blocking = [sys.executable, "-c",
                "import os, signal, sys\n"
                "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])\n"
                "os.execvp(sys.argv[1], sys.argv[1:])\n"]
    mask = mask_of_a_command(tmp_path, [*blocking, *latin1_locale])
    assert signal.SIGUSR1 in mask
    assert signal.SIGHUP not in mask
