"""Project flags: aliases (long and one-letter) and their validation."""

from __future__ import annotations

import argparse

import pytest

from forgather.errors import ConfigError
from forgather.flags import add_flags, flag_overrides, parse_flag_specs
from forgather.project import compose_project, find_project


def _parse(specs, argv):
    parser = argparse.ArgumentParser()
    add_flags(parser, specs)
    return dict((s.key, v) for s, v in flag_overrides(parser.parse_args(argv), specs))


def test_dash_capital_s_is_short_for_save_strategy(tiny_project):
    specs = compose_project(find_project(tiny_project)).flags
    assert _parse(specs, ["-S", "no"]) == {"checkpoint.save_strategy": "no"}
    assert _parse(specs, ["--save-strategy", "epoch"]) == {"checkpoint.save_strategy": "epoch"}


def test_one_letter_alias_of_a_project_flag(tmp_path):
    specs = parse_flag_specs({"seed": {"key": "seed", "type": "int", "aliases": ["-s"]}}, {})
    assert _parse(specs, ["-s", "7"]) == {"seed": 7}


@pytest.mark.parametrize("alias, message", [
    ("-p", "taken by the CLI"),
    ("-d", "taken by the CLI"),
    ("-ab", "--long-name or a single letter"),
    ("seed", "--long-name or a single letter"),
])
def test_alias_that_cannot_work_is_one_line_naming_the_flag(alias, message):
    with pytest.raises(ConfigError, match=rf"flag 'seed' alias .*{message}"):
        parse_flag_specs({"seed": {"key": "seed", "aliases": [alias]}}, {})
