"""bin/slurm-train.sbatch with stand-ins for srun, scontrol and forgather: a SIGTERM reaches the launcher,
whose exit 75 (checkpoint saved) requeues the job; a requeued start passes the same flags."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bin" / "slurm-train.sbatch"

FAKE_SRUN = """#!/usr/bin/env bash
if [[ "$*" == *"hostname --ip-address"* ]]; then echo 10.0.0.1; exit 0; fi
while [[ "$1" == --* ]]; do shift; done  # srun's own options, up to the command it runs
exec "$@"
"""
FAKE_SCONTROL = """#!/usr/bin/env bash
if [[ "$1" == "show" ]]; then echo node1; exit 0; fi
echo "$@" >> "$RECORD/scontrol"
"""
FAKE_FORGATHER = """#!/usr/bin/env bash
echo "$@" > "$RECORD/forgather-args"
trap 'exit 75' TERM  # a run stopped by a signal after saving its checkpoint
echo ready > "$RECORD/started"  # a FIFO the test reads: it blocks until the launcher runs
while true; do sleep 0.1; done
"""


def _bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL), ("forgather", FAKE_FORGATHER)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _start(tmp_path: Path, restarts: int) -> subprocess.Popen:
    os.mkfifo(tmp_path / "started")
    env = {**os.environ, "PATH": f"{_bin(tmp_path)}{os.pathsep}{os.environ['PATH']}", "RECORD": str(tmp_path),
           "SLURM_JOB_NODELIST": "node1", "SLURM_NNODES": "1", "SLURM_JOB_ID": "42",
           "SLURM_RESTART_COUNT": str(restarts), "SLURM_GPUS_ON_NODE": "2"}
    return subprocess.Popen(["bash", str(SCRIPT), str(tmp_path), "--init-model", "--overwrite", "--lr", "1e-3"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_started(fifo: Path, proc: subprocess.Popen) -> None:
    import threading

    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.append(fifo.read_text()), daemon=True)
    reader.start()
    reader.join(30)
    assert seen == ["ready\n"], "the launcher stand-in never started"


def test_a_sigterm_is_passed_on_and_a_saved_stop_requeues_the_job(tmp_path):
    proc = _start(tmp_path, restarts=0)
    _wait_started(tmp_path / "started", proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 75, out
    assert (tmp_path / "scontrol").read_text().split() == ["requeue", "42"]
    args = (tmp_path / "forgather-args").read_text().split()
    assert args[:2] == ["train", "--nnodes"] and "--init-model" in args and "--rdzv-endpoint" in args


def test_a_requeued_start_passes_the_same_flags(tmp_path):
    # forgather train decides from the run dir whether the first start's --init-model still applies
    # (tests/train/test_run_safety.py::test_a_slurm_requeue_of_a_start_over_...).
    proc = _start(tmp_path, restarts=1)
    _wait_started(tmp_path / "started", proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    args = (tmp_path / "forgather-args").read_text().split()
    assert args[-4:] == ["--init-model", "--overwrite", "--lr", "1e-3"]
