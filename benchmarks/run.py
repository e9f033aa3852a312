"""Run the benchmarks one after another and write their results into BENCHMARKS.md and benchmarks/results/.

Usage: python -m benchmarks.run [--only cli data train_step train checkpoint shuffle torture install] [--dry-run]

Each benchmark is its own module that prints a markdown table and writes JSON (with the machine, the date
and its own command). This runner executes them in sequence (never in parallel: they would time each
other), saves each JSON under benchmarks/results/NAME.json, and replaces the section between
`<!-- BEGIN NAME -->` and `<!-- END NAME -->` in BENCHMARKS.md with the exact command, the machine and the
table. Prose around the sections is kept as written.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "BENCHMARKS.md"
RESULTS = REPO / "benchmarks" / "results"

# name → (module, extra arguments)
BENCHMARKS: dict[str, tuple[str, list[str]]] = {
    "cli": ("benchmarks.cli_bench", []),
    "data": ("benchmarks.data_bench", []),
    "train_step": ("benchmarks.train_step_bench", []),
    "train": ("benchmarks.train_bench", []),
    "checkpoint": ("benchmarks.checkpoint_bench", []),
    "shuffle": ("benchmarks.shuffle_bench", []),
    "torture": ("benchmarks.torture", []),
    "install": ("benchmarks.install_bench", []),
}


def run_one(name: str) -> str:
    """Run one benchmark; returns the markdown that goes into its BENCHMARKS.md section."""
    module, extra = BENCHMARKS[name]
    result_file = RESULTS / f"{name}.json"
    argv = [sys.executable, "-m", module, *extra, "--json", str(result_file.relative_to(REPO))]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{module} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    elapsed = time.perf_counter() - started
    machine = json.loads(result_file.read_text())["machine"]
    where = (f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB; Python {machine['python']}, "
             f"torch {machine.get('torch', '?')}" + (f"; GPU {machine['gpu']}" if machine.get("gpu") else ""))
    command = " ".join(["python -m", module, *extra, "--json", str(result_file.relative_to(REPO))])
    return f"Command: `{command}` ({elapsed:.0f} s) · {machine['date']} · {where}\n\n{done.stdout.strip()}\n"


def replace_section(text: str, name: str, body: str) -> str:
    """BENCHMARKS.md with the NAME section's body replaced (appended at the end when absent)."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body}{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    return text.rstrip("\n") + f"\n\n{block}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run just these (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="print what would run")
    args = parser.parse_args()
    names = args.only or list(BENCHMARKS)
    if args.dry_run:
        for name in names:
            module, extra = BENCHMARKS[name]
            print(" ".join(["python -m", module, *extra, "--json", f"benchmarks/results/{name}.json"]))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in names:
        print(f"running {name} ...", flush=True)
        body = run_one(name)
        # Read just before writing: prose edited while a benchmark ran is kept; a later failure keeps this one.
        text = REPORT.read_text(encoding="utf-8") if REPORT.exists() else "# Benchmarks\n"
        REPORT.write_text(replace_section(text, name, body), encoding="utf-8")
    print(f"updated {REPORT.relative_to(REPO)} and {RESULTS.relative_to(REPO)}/")


if __name__ == "__main__":
    main()
