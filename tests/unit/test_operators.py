"""`=`, `+=` and `-=` in services and in defaults, and when defaults reach services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.config_kit import errors, load_text, service_block, warnings


def svc(tmp_path: Path, *lines: str, defaults: tuple[str, ...] = ()) -> Any:
    text = ""
    if defaults:
        text = "defaults\n{\n" + "".join(f"\t{l}\n" for l in defaults) + "}\n"
    config = load_text(tmp_path, text + service_block("svc", *lines))
    assert len(config.services) == 1, errors(config)
    return config.services[0]


def texts(entries: Any) -> list[str]:
    return [e.text for e in entries]


# -- list attributes in a service ---------------------------------------------------

def test_only_from_operators(tmp_path: Path) -> None:
    s = svc(tmp_path, "only_from = 10.0.0.1 10.0.0.2", "only_from += 10.0.0.3",
            "only_from -= 10.0.0.2")
    assert texts(s.only_from) == ["10.0.0.1", "10.0.0.3"]
    s = svc(tmp_path, "only_from = 10.0.0.1", "only_from = 10.0.0.9")
    assert texts(s.only_from) == ["10.0.0.9"]


def test_only_from_empty_means_nobody_and_absent_means_everyone(tmp_path: Path) -> None:
    assert svc(tmp_path, "only_from =").only_from == ()
    assert svc(tmp_path).only_from is None


def test_no_access_remove_matches_parsed_address(tmp_path: Path) -> None:
    s = svc(tmp_path, "no_access = 10.0.0.0 host.example", "no_access -= 10.0.0.0/8 HOST.example")
    assert s.no_access == ()


@pytest.mark.parametrize("attr, first, add, remove, expected", [
    ("log_on_success", "PID HOST", "EXIT", "PID", {"HOST", "EXIT"}),
    ("log_on_failure", "HOST", "ATTEMPT USERID", "HOST", {"ATTEMPT", "USERID"}),
])
def test_log_flag_operators(tmp_path: Path, attr: str, first: str, add: str, remove: str,
                            expected: set[str]) -> None:
    s = svc(tmp_path, f"{attr} = {first}", f"{attr} += {add}", f"{attr} -= {remove}")
    assert getattr(s, attr) == frozenset(expected)


def test_log_flags_clear(tmp_path: Path) -> None:
    s = svc(tmp_path, "log_on_success =", defaults=("log_on_success = PID HOST",))
    assert s.log_on_success == frozenset()


def test_passenv_operators(tmp_path: Path) -> None:
    s = svc(tmp_path, "passenv = PATH HOME", "passenv += LANG", "passenv -= HOME")
    assert s.passenv == ("PATH", "LANG")
    assert s.environment == ("PATH=/usr/bin:/bin", "LANG=C")


def test_env_operators_and_minus_is_rejected(tmp_path: Path) -> None:
    s = svc(tmp_path, "env = A=1", "env += B=2")
    assert s.env == ("A=1", "B=2")
    s = svc(tmp_path, "env = A=1", "env = B=2")
    assert s.env == ("B=2",)
    config = load_text(tmp_path, service_block("svc", "env = A=1", "env -= A=1"))
    assert config.services == ()
    assert any("operator '-=' not supported for env attribute" in e for e in errors(config))


@pytest.mark.parametrize("op", ["+=", "-="])
@pytest.mark.parametrize("line", ["nice 1", "instances 3", "server_args x", "id x",
                                  "banner /x", "cps 1 1"])
def test_single_value_attributes_only_take_equals(tmp_path: Path, op: str, line: str) -> None:
    name, value = line.split(" ", 1)
    config = load_text(tmp_path, service_block("svc", f"{name} {op} {value}"))
    assert len(config.services) == 1
    assert any(f"Service svc: operator '{op}' cannot be used for attribute '{name}'" in w
               for w in warnings(config))


# -- list attributes in defaults -----------------------------------------------------

def test_equals_adds_in_defaults(tmp_path: Path) -> None:
    s = svc(tmp_path, defaults=("only_from = 10.0.0.1", "only_from = 10.0.0.2",
                                "log_on_success = PID", "log_on_success = HOST",
                                "passenv = PATH", "passenv = HOME"))
    assert texts(s.only_from) == ["10.0.0.1", "10.0.0.2"]
    assert s.log_on_success == frozenset({"PID", "HOST"})
    assert s.passenv == ("PATH", "HOME")


def test_minus_in_defaults_removes(tmp_path: Path) -> None:
    s = svc(tmp_path, defaults=("no_access = 10.0.0.1 10.0.0.2", "no_access -= 10.0.0.1",
                                "log_on_failure = HOST ATTEMPT", "log_on_failure -= HOST"))
    assert texts(s.no_access) == ["10.0.0.2"]
    assert s.log_on_failure == frozenset({"ATTEMPT"})


def test_enabled_disabled_ignore_the_operator(tmp_path: Path) -> None:
    config = load_text(tmp_path, "defaults\n{\n\tenabled -= a\n\tenabled = b\n"
                                 "\tdisabled += C\n}\n")
    assert config.defaults.enabled == frozenset({"a", "b"})
    assert config.defaults.disabled == frozenset({"c"})


@pytest.mark.parametrize("op", ["+=", "-="])
def test_scalar_operators_in_defaults_warn(tmp_path: Path, op: str) -> None:
    config = load_text(tmp_path, f"defaults\n{{\n\tinstances {op} 3\n}}\n")
    assert config.defaults.instances is None
    assert any(f"operator '{op}' cannot be used" in w for w in warnings(config))


def test_service_plus_equals_extends_inherited_list(tmp_path: Path) -> None:
    s = svc(tmp_path, "only_from += 10.0.0.2", "log_on_success -= PID",
            defaults=("only_from = 10.0.0.1", "log_on_success = PID HOST"))
    assert texts(s.only_from) == ["10.0.0.1", "10.0.0.2"]
    assert s.log_on_success == frozenset({"HOST"})


def test_service_equals_replaces_inherited_list(tmp_path: Path) -> None:
    s = svc(tmp_path, "only_from = 10.0.0.9", defaults=("only_from = 10.0.0.1",))
    assert texts(s.only_from) == ["10.0.0.9"]


# -- the two moments at which defaults reach services ---------------------------------

def test_defaults_after_a_service_do_not_give_it_lists(tmp_path: Path) -> None:
    text = (service_block("early", port=20001) +
            "defaults\n{\n\tonly_from = 10.0.0.1\n\tbanner = /b\n\tinstances = 9\n"
            "\tlog_on_success = PID\n\tcps = 3 4\n\tumask = 077\n\tgroups = yes\n"
            "\tper_source = 2\n\tmax_load = 1.5\n}\n" + service_block("late", port=20002))
    early, late = load_text(tmp_path, text).services
    # First moment (list attributes and banners): only services read afterwards.
    assert early.only_from is None and early.banner is None
    assert texts(late.only_from) == ["10.0.0.1"] and late.banner == "/b"
    # Second moment (after every file): everyone gets them.
    for s in (early, late):
        assert (s.instances, s.cps, s.umask, s.groups, s.per_source, s.max_load) == (
            9, (3, 4), 0o77, True, 2, 1.5)
        assert s.log_on_success == frozenset({"PID"})


def test_service_own_scalar_beats_defaults(tmp_path: Path) -> None:
    s = svc(tmp_path, "instances = 60", "cps = 1 2", defaults=("instances = 1", "cps = 9 9"))
    assert (s.instances, s.cps) == (60, (1, 2))


def test_built_in_defaults(tmp_path: Path) -> None:
    s = svc(tmp_path)
    assert (s.instances, s.per_source, s.cps, s.max_load, s.groups, s.umask, s.deny_time) == (
        None, None, (50, 10), None, False, None, 0)
    assert s.log_type is None and s.v6only is False


def test_no_access_remove_folds_only_the_case_of_a_to_z(tmp_path: Path) -> None:
    # strcasecmp in the C locale, as xinetd: `Ü` is not `ü`, so the deny entry stays.
    s = svc(tmp_path, "no_access = bücher.example", "no_access -= BÜCHER.EXAMPLE")
    assert texts(s.no_access) == ["bücher.example"]
    s = svc(tmp_path, "no_access = bücher.example", "no_access -= BüCHER.EXAMPLE")
    assert s.no_access == ()
