"""Manifest verification catches every kind of damage and names the file; find_latest skips bad ones."""

from __future__ import annotations

import json
import logging

import pytest

from forgather.checkpoint import layout
from forgather.checkpoint.manifest import find_latest, verify_manifest, write_manifest
from forgather.errors import CheckpointError


def fake_checkpoint(root, step, payload=b"weights" * 1000):
    path = layout.step_dir(root, step)
    (path / "rng").mkdir(parents=True)
    (path / "model.safetensors").write_bytes(payload)
    (path / "rng" / "rank-0.pt").write_bytes(b"rng")
    (path / "trainer_state.json").write_text(json.dumps({"step": step}))
    write_manifest(path, step, world_size=1)
    return path


def flip_byte(path, offset=100):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_manifest_lists_every_file_with_size_and_sha256(tmp_path):
    path = fake_checkpoint(tmp_path, 100)
    manifest = verify_manifest(path)
    assert manifest["step"] == 100 and manifest["world_size"] == 1 and manifest["format_version"] == 2
    assert [e["path"] for e in manifest["files"]] == ["model.safetensors", "rng/rank-0.pt", "trainer_state.json"]
    assert manifest["files"][0]["size"] == 7000 and len(manifest["files"][0]["sha256"]) == 64


@pytest.mark.parametrize("damage, message", [
    (lambda p: flip_byte(p / "model.safetensors"), "sha256 mismatch"),
    (lambda p: (p / "model.safetensors").write_bytes(b"short"), "size 5 bytes"),
    (lambda p: (p / "rng" / "rank-0.pt").unlink(), "missing"),
    (lambda p: (p / "manifest.json").unlink(), "manifest.json: missing"),
    (lambda p: (p / "manifest.json").write_text("{not json"), "unreadable manifest"),
])
def test_damage_raises_checkpoint_error_naming_the_file(tmp_path, damage, message):
    path = fake_checkpoint(tmp_path, 100)
    damage(path)
    with pytest.raises(CheckpointError, match=message) as info:
        verify_manifest(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_manifest_paths_cannot_escape_the_checkpoint(tmp_path):
    path = fake_checkpoint(tmp_path, 100)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"].append({"path": "../../etc/passwd", "size": 1, "sha256": "0"})
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="bad file entry"):
        verify_manifest(path)


def test_find_latest_ignores_temp_and_unsealed_dirs(tmp_path):
    fake_checkpoint(tmp_path, 100)
    (tmp_path / "step-000300.tmp").mkdir()
    (tmp_path / "step-000200").mkdir()  # a dir without a manifest: never sealed
    assert find_latest(tmp_path) == layout.step_dir(tmp_path, 100)


def test_find_latest_falls_back_past_a_corrupted_checkpoint_and_warns(tmp_path, caplog):
    fake_checkpoint(tmp_path, 100)
    newest = fake_checkpoint(tmp_path, 200)
    flip_byte(newest / "model.safetensors")
    with caplog.at_level(logging.WARNING, logger="forgather.checkpoint"):
        assert find_latest(tmp_path) == layout.step_dir(tmp_path, 100)
    assert "step-000200" in caplog.text and "model.safetensors" in caplog.text and "sha256" in caplog.text


def test_find_latest_is_none_without_a_valid_checkpoint(tmp_path):
    assert find_latest(tmp_path) is None
    (tmp_path / "step-000100").mkdir()
    assert find_latest(tmp_path) is None
