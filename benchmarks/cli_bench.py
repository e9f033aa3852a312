"""Wall time of the torch-free CLI path in projects/smollm_pretrain (a fresh interpreter each run).

Goal: `forgather train --dry-run` under 1 s. The run directory goes to a temp dir (--output-dir).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import spread, write_json

PROJECT = Path(__file__).resolve().parents[1] / "projects" / "smollm_pretrain"


def time_command(argv: list[str], repeats: int) -> list[float]:
    """Seconds per run of `argv` in the flagship project, after one untimed run (page cache warm)."""
    subprocess.run(argv, cwd=PROJECT, check=True, capture_output=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, cwd=PROJECT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "forgather.cli"]
    with tempfile.TemporaryDirectory() as out:
        runs = {
            "python -c pass (interpreter floor)": [sys.executable, "-c", "pass"],
            "forgather --help": [*cli, "--help"],
            "forgather train --dry-run": [*cli, "train", "--dry-run", "--output-dir", out],
            "forgather config show --origins": [*cli, "config", "show", "--origins"],
            "forgather model show": [*cli, "model", "show"],
        }
        results = {label: spread(time_command(argv, args.repeats)) for label, argv in runs.items()}
    print("| command | median (s) | min (s) | max (s) | runs |\n|---|---|---|---|---|")
    for label, r in results.items():
        print(f"| {label} | {r['median']:.3f} | {r['min']:.3f} | {r['max']:.3f} | {r['n']} |")
    dry = results["forgather train --dry-run"]["median"]
    print(f"\nGoal `forgather train --dry-run` < 1 s: {'met' if dry < 1 else 'NOT met'} ({dry:.3f} s median).")
    write_json(args.json, {"results": results})


if __name__ == "__main__":
    main()
