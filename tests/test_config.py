"""Strict typed resolution of a project: unknown keys, wrong types, flags and their origins."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from forgather.commands.common import resolve_config
from forgather.errors import ConfigError
from forgather.flags import add_flags
from forgather.project import compose_project, find_project
from forgather.resources import TEMPLATES_DIR

from .conftest import set_in_project, write


def _resolve(project_dir, argv=()):
    composed = compose_project(find_project(project_dir))
    parser = argparse.ArgumentParser()
    add_flags(parser, composed.flags)
    return resolve_config(composed, parser.parse_args(list(argv)))


def test_defaults_come_from_templates_and_model_project_merges_into_arch(tiny_project):
    config, origins = _resolve(tiny_project)
    assert config.name == "tiny"
    base_lines = (TEMPLATES_DIR / "base.yaml").read_text().splitlines()
    line = next(i for i, text in enumerate(base_lines, 1) if text.startswith("  weight_decay:"))
    assert config.train.weight_decay == 0.1 and origins["train.weight_decay"].endswith(f"base.yaml:{line}")
    assert config.model.arch["num_layers"] == 1 and origins["model.arch.num_layers"].endswith("tiny.yaml:2")
    assert config.model.arch["hidden_size"] == 64 and origins["model.arch.hidden_size"].endswith("base.yaml:3")


def test_flags_override_config_and_are_recorded_as_origin(tiny_project):
    config, origins = _resolve(tiny_project, ["--batch-size", "3", "--no-compile"])
    assert config.train.batch_size == 3 and origins["train.batch_size"] == "flag --batch-size"
    assert config.train.compile is False and origins["train.compile"] == "flag --compile"


def test_project_arch_overrides_win_over_model_project(tiny_project):
    text = (tiny_project / "project.yaml").read_text().replace("config: tiny", "config: tiny\n  arch: {hidden_size: 32}")
    (tiny_project / "project.yaml").write_text(text)
    config, origins = _resolve(tiny_project)
    assert config.model.arch["hidden_size"] == 32 and origins["model.arch.hidden_size"].endswith("project.yaml:6")


def test_unknown_key_names_file_line_and_suggests_nearest(tiny_project):
    set_in_project(tiny_project, "train", "batch_sise: 4")
    with pytest.raises(ConfigError, match=r"project.yaml:\d+: unknown key 'train.batch_sise' \(did you mean 'batch_size'\?\)"):
        _resolve(tiny_project)


def test_wrong_value_type_names_key_and_value(tiny_project):
    set_in_project(tiny_project, "train", "grad_accum_steps: lots")
    with pytest.raises(ConfigError, match=r"project.yaml:\d+: train.grad_accum_steps: expected int, got 'lots'"):
        _resolve(tiny_project)


def test_a_sections_own_check_names_where_the_key_was_set_not_the_section(tiny_project):
    with pytest.raises(ConfigError, match=r"^flag --max-length: data.block_size must be at least 2"):
        _resolve(tiny_project, ["--max-length", "1"])
    set_in_project(tiny_project, "data", "chunk_tokens: 8")  # names data.block_size second: its own line wins
    with pytest.raises(ConfigError, match=r"project.yaml:\d+: data.chunk_tokens \(8\) must be at least"):
        _resolve(tiny_project)


def test_choice_outside_literal_is_rejected_with_suggestion(tiny_project):
    set_in_project(tiny_project, "dist", "mode: fsdp")
    with pytest.raises(ConfigError, match=r"dist.mode: 'fsdp' is not one of .*did you mean 'fsdp2'"):
        _resolve(tiny_project)


def test_flag_pointing_at_missing_key_is_an_error(tiny_project):
    text = (tiny_project / "project.yaml").read_text().replace("flags:\n", "flags:\n  bogus:\n    key: train.nope\n    type: int\n")
    (tiny_project / "project.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"flag --bogus sets missing config key 'train.nope'"):
        _resolve(tiny_project, ["--bogus", "1"])


def test_project_found_by_walking_up_from_a_subdirectory(tiny_project):
    sub = tiny_project / "deep" / "er"
    sub.mkdir(parents=True)
    assert find_project(sub).dir == tiny_project.resolve()


def test_named_config_under_configs_dir_is_selected(tiny_project):
    write(tiny_project / "configs" / "big.yaml", "extends: ../project.yaml\ntrain: {batch_size: 64}\n")
    composed = compose_project(find_project(tiny_project, "big"))
    assert composed.tree["train"]["batch_size"] == 64 and composed.tree["name"] == "tiny"
    with pytest.raises(ConfigError, match="no config 'bigg'.*did you mean 'big'"):
        find_project(tiny_project, "bigg")


def test_model_preset_gives_the_shape_on_the_model_projects_architecture(tiny_project):
    config, origins = _resolve(tiny_project, ["--model-preset", "micro"])
    from forgather.models.spec import PRESETS

    for field, value in PRESETS["micro"].items():
        assert config.model.arch[field] == value and origins[f"model.arch.{field}"] == "model.preset micro"
    assert config.model.arch["architecture"] == "llama" and config.model.arch["vocab_size"] == 300


def test_target_params_uses_the_resolved_vocab_and_model_arch_overrides_win(tiny_project):
    from forgather.models.spec import ModelSpec, parameter_counts

    text = (tiny_project / "project.yaml").read_text().replace(
        "config: tiny", "config: tiny\n  arch: {vocab_size: '${data.tokenizer.vocab_size}', num_kv_heads: 2}")
    (tiny_project / "project.yaml").write_text(text)
    config, origins = _resolve(tiny_project, ["--target-params", "3M", "--prefer-depth"])
    total, _ = parameter_counts(ModelSpec.from_dict(config.model.arch))
    assert abs(total - 3_000_000) <= 0.05 * 3_000_000
    assert config.model.arch["num_kv_heads"] == 2 and origins["model.arch.num_kv_heads"].endswith("project.yaml:6")
    assert origins["model.arch.num_layers"] == "model.target_params 3M (prefer_depth)"
    assert config.model.arch["hidden_size"] / config.model.arch["num_layers"] < 40  # deep and thin


@pytest.mark.parametrize("argv, message", [
    (["--model-preset", "nano", "--target-params", "3M"], "set model.preset or model.target_params, not both"),
    (["--target-params", "lots"], "flag --target-params: model.target_params: 'lots' is not a parameter count"),
    (["--target-params", "10"], "no llama shape with vocab_size=300 lands within 5% of 10 params"),
])
def test_bad_model_shape_requests_are_config_errors(tiny_project, argv, message):
    with pytest.raises(ConfigError, match=message):
        _resolve(tiny_project, argv)


def test_an_older_runs_config_reads_with_defaults_for_keys_added_since(tiny_project, tmp_path):
    import yaml

    from forgather.config import read_config, to_plain, write_config

    config, _ = _resolve(tiny_project, ["--batch-size", "3"])
    write_config(config, tmp_path / "config.yaml")
    tree = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del tree["model"]["preset"], tree["train"]["verbose_info"]  # as written before these keys existed
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tree))
    old = read_config(tmp_path / "config.yaml")
    assert old.model.preset is None and old.train.verbose_info is False
    assert to_plain(old) == to_plain(config)  # everything the old file does say is kept


def test_plugins_is_not_a_setting_but_an_older_runs_plugins_line_still_reads(tiny_project, tmp_path):
    import yaml

    from forgather.config import read_config, to_plain, write_config

    config, _ = _resolve(tiny_project)
    assert not hasattr(config, "plugins")
    write_config(config, tmp_path / "config.yaml")
    tree = yaml.safe_load((tmp_path / "config.yaml").read_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**tree, "plugins": []}))  # as older versions wrote it
    assert to_plain(read_config(tmp_path / "config.yaml")) == to_plain(config)
    (tiny_project / "project.yaml").write_text((tiny_project / "project.yaml").read_text() + "plugins: [mymod]\n")
    with pytest.raises(ConfigError, match=r"project.yaml:\d+: unknown key 'plugins'"):
        _resolve(tiny_project)


@pytest.mark.parametrize("spelling", ["--max-length", "--max_length"])
def test_max_length_is_a_common_flag_of_every_project(tiny_project, capsys, spelling):
    import yaml

    from forgather.cli import main

    assert main(["config", "show", "-p", str(tiny_project), spelling, "96"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["data"]["block_size"] == 96


def _write_config_repeatedly(path: str) -> None:
    from forgather.config import write_config

    for _ in range(300):
        write_config(None, Path(path))  # type: ignore[arg-type]  # render_config is replaced: any config


def test_launchers_on_several_nodes_may_write_the_run_config_at_once(tmp_path, monkeypatch):
    import multiprocessing

    import forgather.config

    monkeypatch.setattr(forgather.config, "render_config", lambda config: "name: tiny\n" * 1000)
    fork = multiprocessing.get_context("fork")  # the children inherit the stand-in renderer
    writers = [fork.Process(target=_write_config_repeatedly, args=(str(tmp_path / "config.yaml"),)) for _ in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
    assert [writer.exitcode for writer in writers] == [0, 0]  # a shared temp name made one rename fail
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]
