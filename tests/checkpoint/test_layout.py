"""Step directory names, and which directories count as checkpoints."""

from __future__ import annotations

import pytest

from forgather.checkpoint import layout


def test_step_names_are_zero_padded_and_round_trip():
    assert layout.step_dir_name(200) == "step-000200"
    assert layout.step_dir_name(12345678) == "step-12345678"
    assert layout.parse_step("step-000200") == 200
    with pytest.raises(ValueError):
        layout.step_dir_name(-1)


@pytest.mark.parametrize("name", ["step-000300.tmp", "step-000100.old.tmp", "step-", "steps-000100", "step-12a"])
def test_non_checkpoint_names_do_not_parse(name):
    assert layout.parse_step(name) is None


def test_listing_sorts_by_step_and_ignores_temp_dirs_and_files(tmp_path):
    for name in ("step-000200", "step-000100", "step-1000000", "step-000300.tmp", "other"):
        (tmp_path / name).mkdir()
    (tmp_path / "step-000400").write_text("a file, not a checkpoint")
    assert [step for step, _ in layout.list_checkpoints(tmp_path)] == [100, 200, 1000000]
    assert [p.name for p in layout.list_tmp_dirs(tmp_path)] == ["step-000300.tmp"]


def test_has_checkpoints_ignores_temp_dirs_and_missing_root(tmp_path):
    assert not layout.has_checkpoints(tmp_path / "missing")
    (tmp_path / "step-000300.tmp").mkdir()
    assert not layout.has_checkpoints(tmp_path)
    (tmp_path / "step-000100").mkdir()
    assert layout.has_checkpoints(tmp_path)
