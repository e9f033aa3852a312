"""Template composition: extends chains and lists, deep merge, null deletion, interpolation, origins."""

from __future__ import annotations

import pytest

from forgather.errors import ConfigError
from forgather.templates import compose, interpolate
from forgather.yamlio import load_yaml

from .conftest import write


def test_extends_chain_and_list_merge_deeply_with_later_winning(tmp_path):
    write(tmp_path / "a.yaml", """
        train: {lr: 1, steps: 10, keep: yes}
        tags: [a]
    """)
    write(tmp_path / "b.yaml", """
        extends: a.yaml
        train: {steps: 20}
    """)
    write(tmp_path / "c.yaml", """
        train: {lr: 3}
        other: 1
    """)
    top = write(tmp_path / "top.yaml", """
        extends: [b, c.yaml]
        train:
          keep: null
        tags: [z]
    """)
    tree, origins = compose(top, [tmp_path])
    assert tree == {"train": {"lr": 3, "steps": 20}, "tags": ["z"], "other": 1}
    assert origins["train.lr"].endswith("c.yaml:1")
    assert origins["train.steps"].endswith("b.yaml:2")
    assert origins["tags"].endswith("top.yaml:4")
    assert "train.keep" not in origins


def test_template_found_in_search_dir_when_not_beside_file(tmp_path):
    write(tmp_path / "lib" / "shared.yaml", "x: 1\n")
    top = write(tmp_path / "proj" / "p.yaml", "extends: shared.yaml\ny: 2\n")
    tree, _ = compose(top, [tmp_path / "lib"])
    assert tree == {"x": 1, "y": 2}


def test_extends_cycle_is_an_error_naming_the_chain(tmp_path):
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match=r"extends cycle: a.yaml -> b.yaml -> a.yaml"):
        compose(tmp_path / "a.yaml", [tmp_path])


def test_missing_template_names_what_was_searched(tmp_path):
    top = write(tmp_path / "a.yaml", "extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="template 'nowhere.yaml' not found"):
        compose(top, [tmp_path])


def test_malformed_yaml_reports_file_and_line(tmp_path):
    bad = write(tmp_path / "bad.yaml", "a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+:\d+: malformed YAML"):
        load_yaml(bad)


def test_duplicate_key_is_rejected_with_its_line(tmp_path):
    bad = write(tmp_path / "dup.yaml", "a: 1\nb: 2\na: 3\n")
    with pytest.raises(ConfigError, match=r"dup.yaml:3: duplicate key 'a'"):
        load_yaml(bad)


def test_yaml_tags_that_construct_objects_are_refused(tmp_path):
    bad = write(tmp_path / "evil.yaml", "a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_yaml(bad)


def test_interpolation_keeps_type_for_whole_references_and_formats_inside_strings(monkeypatch):
    monkeypatch.setenv("FG_TEST_VAR", "from-env")
    monkeypatch.delenv("FG_UNSET_VAR", raising=False)
    tree = {
        "a": {"n": 4, "name": "x"},
        "b": "${a.n}",
        "c": "run-${a.name}-${a.n}",
        "d": "${env:FG_TEST_VAR}",
        "e": "${env:FG_UNSET_VAR,fallback}",
        "f": ["${b}"],
    }
    out = interpolate(tree, {})
    assert out["b"] == 4 and out["c"] == "run-x-4"
    assert out["d"] == "from-env" and out["e"] == "fallback" and out["f"] == [4]


def test_interpolation_of_missing_key_names_origin_and_suggests():
    with pytest.raises(ConfigError, match=r"p.yaml:3: \$\{train.bach\} refers to a missing key 'train.bach' \(did you mean 'train.batch'\?\)"):
        interpolate({"train": {"batch": 1}, "x": "${train.bach}"}, {"x": "p.yaml:3"})


def test_interpolation_cycle_is_an_error():
    with pytest.raises(ConfigError, match="interpolation cycle"):
        interpolate({"a": "${b}", "b": "${a}"}, {})


def test_exponent_numbers_without_a_dot_are_numbers():
    from forgather.yamlio import parse_yaml

    # YAML 1.1 kept these strings: `--set model.arch.rope_theta=5e5` was the text '5e5', and a resume that
    # gave 500000.0 was refused as a model change.
    assert parse_yaml("a: 5e5\nb: 1e-3\nc: -2E+2\nd: 1.5B\ne: e5\nf: 1_000", "x") == {
        "a": 500000.0, "b": 0.001, "c": -200.0, "d": "1.5B", "e": "e5", "f": 1000}
