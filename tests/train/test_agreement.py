"""Stop requests (and any other small flag) are agreed one step late, by every rank at the same step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from forgather.train.agreement import StepAgreement

HERE = Path(__file__).resolve().parent


def test_one_process_gets_its_own_values_back_a_step_later():
    agreement = StepAgreement(("stop",), world_size=1)
    assert [agreement.exchange(stop=s)["stop"] for s in (0, 1, 0, 0)] == [0, 0, 1, 0]
    with pytest.raises(ValueError, match="stop"):
        agreement.exchange(epoch=1)


def test_two_ranks_agree_on_the_max_at_the_same_step_without_blocking():
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(HERE / "agreement_script.py")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    reports = [json.loads(l[len("AGREED "):]) for l in result.stdout.splitlines() if l.startswith("AGREED ")]
    assert sorted(r["rank"] for r in reports) == [0, 1]
    expected = [{"stop": 0, "epoch": 0}] + [{"stop": int(step == 4), "epoch": step - 1} for step in range(2, 7)]
    for report in reports:
        assert report["seen"] == expected  # rank 1's stop at step 3 reaches both ranks at step 4
        assert report["async"] and all(report["async"])  # never a blocking all-reduce
