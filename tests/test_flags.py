"""Project flags: aliases (long and one-letter) and their validation, and the generic --set."""

from __future__ import annotations

import argparse

import pytest

from forgather.errors import ConfigError
from forgather.flags import add_flags, flag_overrides, parse_assignment, parse_flag_specs
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


def _resolve(project_dir, argv=()):
    from forgather.commands.common import add_project_flags, resolve_config

    composed = compose_project(find_project(project_dir))
    parser = argparse.ArgumentParser()
    add_project_flags(parser, composed)
    return resolve_config(composed, parser.parse_args(list(argv)))


def test_set_overrides_any_key_typed_like_yaml_with_its_origin(tiny_project):
    config, origins = _resolve(tiny_project, ["--set", "train.betas=[0.8, 0.9]", "--set", "data.shuffle=false",
                                              "--set", "train.learning_rate=1e-3", "--set", "model.arch.hidden_size=32"])
    assert config.train.betas == [0.8, 0.9] and config.data["shuffle"] is False
    assert config.train.learning_rate == 0.001 and config.model.arch["hidden_size"] == 32
    assert origins["train.betas"] == "--set train.betas" and origins["model.arch.hidden_size"] == "--set model.arch.hidden_size"


def test_set_wins_over_the_flag_for_the_same_key(tiny_project):
    config, origins = _resolve(tiny_project, ["--set", "train.batch_size=5", "--batch-size", "3"])
    assert config.train.batch_size == 5 and origins["train.batch_size"] == "--set train.batch_size"


def test_set_of_unknown_key_names_the_nearest_valid_key(tiny_project):
    with pytest.raises(ConfigError, match=r"^--set train.lerning_rate: no such config key \(did you mean "
                                          r"'train.learning_rate'\?\)"):
        _resolve(tiny_project, ["--set", "train.lerning_rate=1"])


def test_set_value_of_the_wrong_type_names_the_set(tiny_project):
    with pytest.raises(ConfigError, match=r"--set train.batch_size: train.batch_size: expected int"):
        _resolve(tiny_project, ["--set", "train.batch_size=many"])


@pytest.mark.parametrize("text", ["train.batch_size", "=3", "train..x=1"])
def test_set_without_key_equals_value_is_rejected(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected key.path=value"):
        parse_assignment(text)


def test_a_set_given_at_resume_changes_the_run_like_a_flag(tiny_project):
    from forgather.resume_config import reconcile

    saved, _ = _resolve(tiny_project)
    fresh, origins = _resolve(tiny_project, ["--set", "train.max_steps=9"])
    reconciled = reconcile(fresh, origins, saved)
    assert reconciled.config.train.max_steps == 9
    assert [(k, f) for k, _, _, f in reconciled.changes] == [("train.max_steps", "--set train.max_steps")]


def test_a_flag_at_resume_that_the_kept_model_or_tokenizer_cannot_follow_is_refused(tiny_project):
    from forgather.resume_config import reconcile

    saved, _ = _resolve(tiny_project)
    block = saved.data["block_size"]
    assert saved.model.arch["max_position_embeddings"] == block  # it followed the data when the run started
    longer, origins = _resolve(tiny_project, ["--set", f"data.block_size={2 * block}",
                                              "--set", "checkpoint.restore_dataset_state=false"])
    with pytest.raises(ConfigError, match=rf"--set data.block_size makes data.block_size {2 * block}, past this "
                                          rf"run's model's max_position_embeddings {block}"):
        reconcile(longer, origins, saved)
    shorter, origins = _resolve(tiny_project, ["--set", f"data.block_size={block // 2}",
                                               "--set", "checkpoint.restore_dataset_state=false"])
    assert reconcile(shorter, origins, saved).config.data["block_size"] == block // 2  # fits the kept model
    vocab, origins = _resolve(tiny_project, ["--set", "data.tokenizer.vocab_size=400",
                                             "--set", "checkpoint.restore_dataset_state=false"])
    with pytest.raises(ConfigError, match=r"changes data.tokenizer.vocab_size .* keeps the tokenizer its "
                                          r"checkpoints were trained with"):
        reconcile(vocab, origins, saved)


def test_no_accelerator_applies_to_its_own_launch_only(tiny_project):
    from forgather.resume_config import reconcile

    saved, _ = _resolve(tiny_project)
    saved.dist.accelerator = False  # the run started with --no-accelerator (as README's smoke step does)
    fresh, origins = _resolve(tiny_project)
    assert fresh.dist.accelerator is True and reconcile(fresh, origins, saved).config.dist.accelerator is True
