"""The README matches the command line: every command row lists exactly that command's options,
and every concrete `nmforge ...` command line in it parses."""
import re
import shlex

import pytest

from conftest import REPO
from nmforge.cli import _parser

README = (REPO / "README.md").read_text()


def _subparsers():
    parser = _parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def _command_rows():
    rows = {}
    for cell in re.findall(r"^\| `(nmforge [^`]+)` \|", README, re.M):
        words = cell.split()
        if words[1].startswith("-"):
            continue
        rows[words[1]] = cell
    return rows


def test_every_command_has_a_row():
    assert set(_command_rows()) == set(_subparsers())
    assert "`nmforge --version`" in README


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_row_lists_exactly_the_commands_options(command):
    sub = _subparsers()[command]
    options = {s for a in sub._actions for s in a.option_strings if s.startswith("--")} - {"--help"}
    shown = set(re.findall(r"(--[a-z][a-z-]*)", _command_rows()[command]))
    aliases = {a.option_strings[-1]: a.option_strings[0] for a in sub._actions if len(a.option_strings) > 1}
    row = _command_rows()[command]
    shown |= {long for long, short in aliases.items() if re.search(rf"[\[ ]{re.escape(short)}[ \]]", row)}
    assert shown == options, (command, sorted(options - shown), sorted(shown - options))


def _command_lines():
    """Concrete command lines: in code blocks and inline code, placeholders filled in."""
    found = re.findall(r"(?:^|`|&& )(nmforge (?:generate|sim|synth|package|build|sweep|flow) [^`\n&]+)",
                       README, re.M)
    return [line.strip() for line in found if "\\|" not in line and "[" not in line]


@pytest.mark.parametrize("line", _command_lines())
def test_readme_command_lines_parse(line):
    argv = shlex.split(line.replace("CONFIG", "examples/nm24_int8_4x4.toml").replace("VLNV", "x")
                       .replace("SWEEP", "examples/sweeps/x.toml").replace("DIR", "out/x"))[1:]
    _parser().parse_args(argv)  # an unknown option or a bad value exits (SystemExit fails the test)


def test_there_are_command_lines_to_check():
    assert len(_command_lines()) >= 2
