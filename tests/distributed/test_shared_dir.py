"""torchrun with 2 gloo processes: a run directory that is not one filesystem for all ranks is refused at start."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def test_a_directory_each_rank_sees_differently_is_refused_on_every_rank(tmp_path):
    script = Path(__file__).with_name("shared_dir_script.py")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
           str(tmp_path)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, cwd=repo)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    refusals = re.findall(r"REFUSED rank \d: .*", out)
    assert len(refusals) == 2 and "ACCEPTED" not in out, out[-4000:]
    assert all("is not shared by every node: rank 1 on " in line and "cannot see the file rank 0" in line
               for line in refusals), refusals


def test_rank_0_removes_its_marker_when_a_peer_dies_during_the_check(tmp_path, monkeypatch):
    import torch.distributed as dist

    from forgather.dist import shared_dir

    def peer_gone(views, mine):
        raise RuntimeError("Connection closed by peer")  # what gloo raises when the other rank has died

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    monkeypatch.setattr(dist, "broadcast_object_list", lambda objects, src: None)
    monkeypatch.setattr(dist, "all_gather_object", peer_gone)
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="closed by peer"):  # the lost peer's error still reaches the caller
        shared_dir.check_shared_directory(run_dir)
    assert list(run_dir.iterdir()) == []  # it left .forgather-shared-<token> in the run dir
