"""GPU facts without torch: CUDA_VISIBLE_DEVICES → NVML mapping, one GPU per rank, -d checks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from forgather.devices import Gpu, devices_problem, gpu_for_local_rank, nvml_selector, visible_entries
from forgather.errors import UserError

FOUR = [Gpu(i, f"GPU-{i}", "NVIDIA H100 80GB HBM3") for i in range(4)]


def test_nvml_finds_the_physical_gpu_behind_a_cuda_index():
    # Under -d 2,3 CUDA's device 1 is physical GPU 3; NVML's index 1 is another GPU (the old lookup).
    assert nvml_selector(1, None, "2,3") == ("index", 3)
    assert nvml_selector(1, None, None) == ("index", 1)
    assert nvml_selector(0, None, "GPU-aaaa,GPU-bbbb") == ("uuid", "GPU-aaaa")
    # The UUID torch reports names the same GPU whatever the ordering (CUDA_DEVICE_ORDER): preferred.
    assert nvml_selector(1, "1234-abcd", "2,3") == ("uuid", "GPU-1234-abcd")


def test_visible_entries_stop_where_cuda_stops():
    assert visible_entries(None) is None
    assert visible_entries("") == []
    assert visible_entries("0,1,-1,3") == ["0", "1"]


def test_two_ranks_never_share_a_gpu():
    assert gpu_for_local_rank(1, 2, "0,1") == 1
    with pytest.raises(UserError, match=r"local rank 2 has no GPU of its own: 2 visible \(CUDA_VISIBLE_DEVICES=4,5\)"):
        gpu_for_local_rank(2, 2, "4,5")  # local_rank % count stacked it on GPU 0


def test_dash_d_names_gpus_that_exist():
    assert devices_problem(["0", "3"], FOUR, "0,3") is None
    assert "GPU 4 does not exist; this machine has 4 GPU(s), numbered 0-3" in devices_problem(["0", "4"], FOUR, "0,4")
    assert "no NVIDIA GPU on this machine" in devices_problem(["0"], [], "0")


def test_the_module_is_torch_free():
    code = "import sys, forgather.devices; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
