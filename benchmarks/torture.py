"""Fault injection as a user would meet it: kills, signals, corruption, two writers, a full disk.

Usage: python -m benchmarks.torture [--json FILE]

Each case runs `forgather train` (CPU, gloo) on a fresh copy of the test suite's tiny project and checks the
outcome README's "what survives what" promises; the table says what was expected and what happened.
Exits 1 if any case did not hold. The same cases are tests (tests/train/test_run_safety.py, test_resume.py);
this runs them in one go, with timings, as a check of a machine or a build.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import psutil

from .common import write_json

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.conftest import make_tiny_project, set_in_project  # noqa: E402
from tests.train.processes import Training  # noqa: E402

PREEMPTED = 75


def run(project: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "forgather.cli", "train", "--no-accelerator", *args], cwd=project,
                          capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


STARTED: list[Training] = []  # background runs of the current case, stopped after it whatever happened


def start(project: Path, *args: str, nproc: int = 1) -> Training:
    job = Training(project, *args, nproc=nproc)
    STARTED.append(job)
    return job


def stop_leftovers() -> None:
    """kill -9 what a case left running (a case that failed half-way), ranks first, before its dir goes."""
    while STARTED:
        job = STARTED.pop()
        if job.proc.poll() is None:
            ranks = job.ranks()
            job.proc.kill()
            for rank in ranks:
                rank.kill()
            psutil.wait_procs(ranks, timeout=30)
            job.proc.wait(timeout=30)


def checkpoints(project: Path) -> list[Path]:
    """Published checkpoints only (a save in flight or killed is a step-NNNNNN.tmp dir)."""
    return sorted(p for p in (project / "output" / "checkpoints").glob("step-*") if re.fullmatch(r"step-\d+", p.name))


def corrupt(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][:140] if lines else ""


def case_sigterm(project: Path) -> tuple[bool, str]:
    job = start(project, "--init-model", "--max-steps", "100000", nproc=2)
    job.wait_for(r"^step 3/")
    job.proc.send_signal(signal.SIGTERM)
    status = job.finish()
    saved = re.search(r"stopped by signal at step (\d+)", job.output)
    ok = status == PREEMPTED and saved is not None and (checkpoints(project)[-1] / "manifest.json").is_file()
    return ok, f"exit {status}, checkpoint at step {saved.group(1) if saved else '?'}"


def case_kill_rank(project: Path) -> tuple[bool, str]:
    job = start(project, "--init-model", "--max-steps", "100000", nproc=2)
    job.wait_for(r"saved checkpoint .*step-000004")
    job.ranks()[-1].kill()
    status = job.finish()
    resumed = run(project, "--max-steps", "6", "--nproc-per-node", "2")
    ok = status != 0 and resumed.returncode == 0 and "resuming from" in resumed.stdout
    return ok, f"killed run exit {status}; resume exit {resumed.returncode}"


def case_kill_launcher(project: Path) -> tuple[bool, str]:
    job = start(project, "--init-model", "--max-steps", "100000", nproc=2)
    job.wait_for(r"^step 2/")
    ranks = job.ranks()
    started = time.monotonic()
    job.proc.kill()
    _, alive = psutil.wait_procs(ranks, timeout=120)
    took = time.monotonic() - started
    again = run(project, "--max-steps", "1000000")  # resumes: the dead job's lock is no obstacle
    ok = not alive and bool(checkpoints(project)) and "resuming from" in again.stdout
    return ok, f"ranks stopped {took:.1f}s after the launcher died, checkpoint saved, run dir free"


def case_kill_during_save(project: Path) -> tuple[bool, str]:
    set_in_project(project, "checkpoint", "save_every: 1")
    job = start(project, "--init-model", "--max-steps", "100000")
    job.wait_for(r"saved checkpoint .*step-000002")
    root = project / "output" / "checkpoints"
    deadline = time.monotonic() + 120
    while not list(root.glob("step-*.tmp")) and time.monotonic() < deadline:  # catch a save in flight
        time.sleep(0.001)
    job.proc.kill()
    for rank in job.ranks():
        rank.kill()
    job.finish()
    latest = checkpoints(project)[-1]
    resumed = run(project, "--max-steps", str(int(latest.name.split("-")[1]) + 1))
    ok = resumed.returncode == 0 and f"resuming from {latest}" in resumed.stdout
    return ok, f"resumed from {latest.name} (the complete one), partial save ignored"


def case_disk_full(project: Path, hooks: Path) -> tuple[bool, str]:
    from tests.train.test_run_safety import FULL_DISK

    (hooks / "sitecustomize.py").write_text(FULL_DISK)
    failed = run(project, "--init-model", env={"PYTHONPATH": f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    left = list((project / "output" / "checkpoints").glob("*"))
    ok = failed.returncode == 2 and "Traceback" not in failed.stderr and not left
    return ok, f"exit {failed.returncode}: {last_line(failed.stderr)}"


def case_damaged_newest(project: Path) -> tuple[bool, str]:
    assert run(project, "--init-model", "--max-steps", "4").returncode == 0
    corrupt(checkpoints(project)[-1] / "model.safetensors")
    resumed = run(project, "--max-steps", "5")
    ok = resumed.returncode == 0 and "skipping damaged checkpoint step-000004" in resumed.stdout
    return ok, "newest named and skipped; resumed from step 2"


def case_all_damaged(project: Path) -> tuple[bool, str]:
    assert run(project, "--init-model", "--max-steps", "4").returncode == 0
    for path in checkpoints(project):
        corrupt(path / "model.safetensors")
    refused = run(project, "--max-steps", "6")
    ok = refused.returncode == 2 and len(checkpoints(project)) == 2 and "no checkpoint in" in refused.stderr
    return ok, f"exit {refused.returncode}: {last_line(refused.stderr)}"


def case_two_writers(project: Path) -> tuple[bool, str]:
    first = start(project, "--init-model", "--max-steps", "100000")
    first.wait_for(r"^step 2/")
    second = run(project, "--max-steps", "3")
    first.proc.send_signal(signal.SIGTERM)
    first.finish()
    ok = second.returncode == 2 and "is in use by pid" in second.stderr
    return ok, f"exit {second.returncode}: {last_line(second.stderr)}"


CASES: list[tuple[str, str, Callable]] = [
    ("SIGTERM", "ranks save, exit 75", case_sigterm),
    ("kill -9 of a rank", "exit ≠ 0, then resume", case_kill_rank),
    ("kill -9 of forgather train", "ranks save and stop", case_kill_launcher),
    ("kill -9 during a save", "previous checkpoint latest", case_kill_during_save),
    ("disk full during a save", "one line, nothing partial", case_disk_full),
    ("newest checkpoint damaged", "named, previous resumed", case_damaged_newest),
    ("every checkpoint damaged", "refused, nothing deleted", case_all_damaged),
    ("two writers on one run dir", "second refused", case_two_writers),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows, results = [], {}
    for name, expected, case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            project = make_tiny_project(Path(tmp))
            for line in ("log_every: 1", "eval_every: 0", "warmup_steps: 0"):
                set_in_project(project, "train", line)
            set_in_project(project, "checkpoint", "save_every: 2")
            started = time.monotonic()
            try:
                ok, seen = case(project, Path(tmp)) if case is case_disk_full else case(project)
            except Exception as exc:  # noqa: BLE001 - a case that breaks is a failed case, reported in the table
                ok, seen = False, f"{type(exc).__name__}: {str(exc)[:120]}"
            finally:
                stop_leftovers()
            seconds = time.monotonic() - started
        results[name] = {"ok": ok, "observed": seen, "seconds": seconds}
        rows.append(f"| {name} | {expected} | {seen} | {'ok' if ok else 'FAILED'} | {seconds:.0f} s |")
        print(rows[-1], flush=True, file=sys.stderr)  # live progress; the table goes to stdout
    print("\n| case | expected | observed | result | time |\n|---|---|---|---|---|\n" + "\n".join(rows))
    write_json(args.json, {"results": results})
    sys.exit(0 if all(r["ok"] for r in results.values()) else 1)


if __name__ == "__main__":
    main()
