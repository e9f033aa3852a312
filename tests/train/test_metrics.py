"""Throughput and MFU windows, and the peak-FLOPs table they divide by."""

from __future__ import annotations

import time

import pytest

from forgather.devices import peak_flops_for_name
from forgather.train.metrics import ThroughputMeter


def test_eval_and_save_time_is_left_out_of_throughput_and_mfu():
    synced = []
    meter = ThroughputMeter(flops_per_token=6.0, peak=1e6, world_size=1, synchronize=lambda: synced.append(1))
    meter.add(1000, data_wait=0.0)
    time.sleep(0.05)  # training
    with meter.excluded():  # evaluation or a checkpoint
        time.sleep(0.5)
    report = meter.report()
    assert synced == [1]  # queued device work finishes before the excluded window starts
    assert report["tps"] > 1000 / 0.3, report  # ~1000/0.05; with the 0.5 s counted it would be < 1000/0.55
    assert report["mfu(%)"] == pytest.approx(100 * report["tps"] * 6.0 / 1e6)
    meter.add(10, 0.0)
    assert meter.excluded_time == 0.0  # a new window starts clean


@pytest.mark.parametrize("name, flops", [
    ("NVIDIA L40", 181e12),  # a substring match took "L4" (121) for it
    ("NVIDIA L4", 121e12),
    ("NVIDIA L40S", 362e12),
    ("NVIDIA H200", 989e12),
    ("NVIDIA H200 NVL", 835e12),
    ("NVIDIA H100 80GB HBM3", 989e12),
    ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA GH200 480GB", 989e12),
    ("NVIDIA A100-SXM4-80GB", 312e12),
    ("NVIDIA A10", 125e12),
    ("NVIDIA GeForce RTX 4090", 165e12),
    ("NVIDIA GeForce RTX 3090 Ti", 71e12),
    ("Tesla T4", None),
    ("NVIDIA H1000", None),
])
def test_peak_flops_matches_whole_model_names(name, flops):
    assert peak_flops_for_name(name) == flops
