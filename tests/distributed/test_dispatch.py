"""torchrun with 2 gloo processes: dispatched batches == batches read from each rank's own shards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_dispatch_equals_sharded_reading_under_torchrun(tiny_corpus, tmp_path):
    script = Path(__file__).with_name("dispatch_script.py")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(script), str(tiny_corpus), str(tmp_path / "cache")]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=repo)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "DISPATCH_OK rank 0/2" in out and "DISPATCH_OK rank 1/2" in out, out[-4000:]
