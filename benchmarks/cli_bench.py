"""Wall time of `forgather train --dry-run` in projects/smollm_pretrain (fresh interpreter each run)."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1] / "projects" / "smollm_pretrain"


def time_command(argv: list[str], repeats: int) -> list[float]:
    """Seconds per run of `argv` in the flagship project, `repeats` times."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, cwd=PROJECT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    runs = {
        "python -c pass (interpreter floor)": [sys.executable, "-c", "pass"],
        "forgather train --dry-run": [sys.executable, "-m", "forgather.cli", "train", "--dry-run"],
        "forgather config show --origins": [sys.executable, "-m", "forgather.cli", "config", "show", "--origins"],
    }
    print("| command | median (s) | min (s) | max (s) |\n|---|---|---|---|")
    for label, argv in runs.items():
        times = time_command(argv, args.repeats)
        print(f"| {label} | {statistics.median(times):.3f} | {min(times):.3f} | {max(times):.3f} |")


if __name__ == "__main__":
    main()
