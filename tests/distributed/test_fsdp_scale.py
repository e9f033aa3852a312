"""torchrun with 4 gloo processes: meta-device init == eager init under FSDP2 and HSDP; HSDP 2×2, FSDP2 with
sharded gradient accumulation and selective activation checkpointing all train like DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_meta_init_and_hsdp_2x2_sharded_accumulation_and_selective_ac_match_ddp():
    script = Path(__file__).with_name("fsdp_scale_script.py")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4",
                             str(script)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert sorted(line.split()[-1] for line in result.stdout.splitlines() if line.startswith("SCALE_OK")) == \
        ["0", "1", "2", "3"], out[-4000:]
