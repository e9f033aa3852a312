"""torchrun with 2 gloo processes: a run directory that is not one filesystem for all ranks is refused at start."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


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
