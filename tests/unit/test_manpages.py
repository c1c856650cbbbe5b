"""The manual pages in man/: they render cleanly, list every option and attribute the
code accepts (so they cannot fall behind it), and are installed with the package."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from pyxinetd.cli import cli
from pyxinetd.config.attributes import ALIASES, TABLE
from pyxinetd.config.logvalues import SYSLOG_FACILITIES, SYSLOG_LEVELS
from pyxinetd.config.model import (LOG_ON_FAILURE_FLAGS, LOG_ON_SUCCESS_FLAGS, SERVICE_FLAGS,
                                   SERVICE_TYPES)
from pyxinetd.options import OPTION_WORDS

ROOT = Path(__file__).resolve().parents[2]
DAEMON_PAGE = ROOT / "man" / "pyxinetd.8"
CONFIG_PAGE = ROOT / "man" / "pyxinetd.conf.5"


def words_of(page: Path) -> str:
    """The page's text with roff's escapes taken out: `\\-f` is `-f`, `\\fBbind\\fP` is
    `bind`, so a name is found as a reader sees it."""
    text = page.read_text()
    text = re.sub(r"\\f(\[[^]]*\]|.)", "", text)
    text = text.replace("\\-", "-").replace("\\(en", "-").replace("\\ ", " ")
    return text


def mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w\\-]){re.escape(word)}(?![\w-])", text) is not None


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
@pytest.mark.parametrize("page", [DAEMON_PAGE, CONFIG_PAGE], ids=lambda p: p.name)
def test_the_pages_render_without_a_warning(page: Path) -> None:
    # -ww: every warning; -z: no output, only the formatting.
    result = subprocess.run(["groff", "-man", "-ww", "-z", str(page)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stderr) == (0, "")


def _click_options(command: click.Command, context: click.Context) -> list[str]:
    return [opt for param in command.get_params(context) if isinstance(param, click.Option)
            for opt in (*param.opts, *param.secondary_opts)]


def test_every_command_line_option_is_in_the_daemon_page() -> None:
    text = words_of(DAEMON_PAGE)
    # As click builds them, so that -h (the group's context setting) is counted too.
    top = click.Context(cli, info_name="pyxinetd", **cli.context_settings)
    accepted = list(OPTION_WORDS) + _click_options(cli, top)
    for name, command in cli.commands.items():
        context = click.Context(command, info_name=name, parent=top)
        accepted += [name] + _click_options(command, context)
    assert "-h" in accepted and "-dontfork" in accepted
    assert [word for word in accepted if not mentions(text, word)] == []


def test_every_attribute_is_in_the_configuration_page() -> None:
    text = words_of(CONFIG_PAGE)
    names = list(TABLE) + list(ALIASES)
    assert [name for name in names if not mentions(text, name)] == []


def test_every_type_flag_log_flag_facility_and_level_is_in_the_configuration_page() -> None:
    text = words_of(CONFIG_PAGE)
    values = (SERVICE_TYPES + SERVICE_FLAGS + LOG_ON_SUCCESS_FLAGS + LOG_ON_FAILURE_FLAGS
              + SYSLOG_LEVELS + tuple(f for f in SYSLOG_FACILITIES if not f.startswith("local")))
    assert [value for value in values if not mentions(text, value)] == []


def test_the_package_installs_the_pages_where_man_looks() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data_files = project["tool"]["setuptools"]["data-files"]
    assert data_files["share/man/man8"] == ["man/pyxinetd.8"]
    assert data_files["share/man/man5"] == ["man/pyxinetd.conf.5"]
    assert DAEMON_PAGE.is_file() and CONFIG_PAGE.is_file()


@pytest.mark.parametrize("page", [DAEMON_PAGE, CONFIG_PAGE], ids=lambda p: p.name)
def test_the_pages_name_the_version_the_package_has(page: Path) -> None:
    tomllib = pytest.importorskip("tomllib")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    title = next(line for line in page.read_text().splitlines() if line.startswith(".TH "))
    assert f'"pyxinetd {version}"' in title
