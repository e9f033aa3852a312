"""Published files and directories get the mode the umask gives, not tempfile's or safetensors' private ones."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import torch

from forgather.filemodes import _UMASK, as_created
from forgather.models.hf import write_hf_weights


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_weights_and_published_directories_follow_the_umask(tmp_path):
    current = os.umask(0o022)
    os.umask(current)
    assert _UMASK == current
    write_hf_weights([("w", torch.zeros(2))], tmp_path / "model")
    assert _mode(tmp_path / "model" / "model.safetensors") == 0o666 & ~_UMASK  # safetensors wrote 0600
    made = Path(tempfile.mkdtemp(dir=tmp_path))
    as_created(made)
    assert _mode(made) == 0o777 & ~_UMASK  # mkdtemp made it 0700: an export nobody else could load
