"""torchrun with 2 gloo processes: dispatched batches == sharded batches (and resume through dispatch)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from .conftest import CORPUS, SMOLLM2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dispatch_equals_sharded_under_torchrun(shared_data, tmp_path):
    script = Path(__file__).with_name("dispatch_script.py")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path), "HF_HOME": str(tmp_path / "hf"),
           "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--nnodes", "1",
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           str(script), str(CORPUS), str(SMOLLM2), str(tmp_path / "cache")]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=repo)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "DISPATCH_OK rank 0/2" in out and "DISPATCH_OK rank 1/2" in out, out[-4000:]
