"""Reading the service manager's variables (pyxinetd.notify.take_from_environment)."""

from __future__ import annotations

from pyxinetd.notify import NotifyTarget, take_from_environment


def test_path_socket_and_variables_removed() -> None:
    env = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000",
           "WATCHDOG_PID": "42", "PATH": "/bin"}
    assert take_from_environment(env, pid=42) == NotifyTarget("/run/systemd/notify", 15.0)
    assert env == {"PATH": "/bin"}


def test_abstract_name() -> None:
    assert take_from_environment({"NOTIFY_SOCKET": "@sd"}) == NotifyTarget("\0sd", None)


def test_watchdog_for_another_process_is_not_ours() -> None:
    env = {"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "7"}
    assert take_from_environment(env, pid=8) == NotifyTarget("/n", None)
    assert env == {}


def test_watchdog_without_pid_is_ours_and_bad_values_are_ignored() -> None:
    assert take_from_environment({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "1000000"},
                                 pid=1) == NotifyTarget("/n", 0.5)
    for bad in ("0", "-5", "soon"):
        assert take_from_environment({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": bad},
                                     pid=1) == NotifyTarget("/n", None)


def test_no_socket_or_unsupported_kinds() -> None:
    env = {"WATCHDOG_USEC": "1000000"}
    assert take_from_environment(env) is None
    assert env == {}  # still removed: no server inherits them
    assert take_from_environment({"NOTIFY_SOCKET": ""}) is None
    assert take_from_environment({"NOTIFY_SOCKET": "vsock:2:1234"}) is None
    assert take_from_environment({"NOTIFY_SOCKET": "@"}) is None
