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


def test_a_resume_sets_aside_what_lost_training_logged_after_its_checkpoint(tmp_path):
    import json

    from forgather.commands.logs import read_metrics, summarise
    from forgather.train.metrics import ABANDONED_FILE, MetricsSink

    runs = tmp_path / "runs"
    runs.mkdir()
    # Logged up to step 80 by a run killed after its step-50 save, its last line cut short by the kill.
    records = [json.dumps({"step": s, "loss": 9.0 - s / 100, "tokens": 512 * s}) for s in range(10, 90, 10)]
    (runs / "metrics.jsonl").write_text("\n".join(records) + '\n{"step": 9')
    sink = MetricsSink(runs, total_steps=60, start_step=50, enabled=True)
    sink.log(60, {"loss": 1.5, "tokens": 30720})
    sink.close()
    summary = summarise(read_metrics(runs / "metrics.jsonl"), runs)  # `logs summary` said steps 80, loss 8.2
    assert summary["steps"] == 60 and summary["final_loss"] == 1.5 and summary["tokens"] == 30720
    aside = [json.loads(line)["step"] for line in (runs / ABANDONED_FILE).read_text().splitlines()[:3]]
    assert aside == [60, 70, 80]
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    events = [e for path in runs.glob("events.*") for e in EventFileLoader(str(path)).Load()]
    restarts = [e.step for e in events if e.HasField("session_log") and e.session_log.status == e.session_log.START]
    assert restarts == [51]  # TensorBoard hides what earlier event files hold from step 51 on
