"""The GPU bench's --smoke mode runs the same code on CPU, so the prepared GPU command cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The device machine has no torchdata, datasets or pyarrow: importing any of them must fail the smoke run too.
RUN_WITHOUT_DATA_LIBRARIES = (
    "import runpy, sys\n"
    "class Refuse:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('torchdata', 'datasets', 'pyarrow'):\n"
    "            raise ImportError(f'{name} is not on the GPU machine')\n"
    "sys.meta_path.insert(0, Refuse())\n"
    "sys.argv = ['benchmarks.gpu', *sys.argv[1:]]\n"
    "runpy.run_module('benchmarks.gpu', run_name='__main__', alter_sys=True)\n"
)


def test_smoke_runs_every_section_and_writes_json_and_report(tmp_path):
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n\nprose kept\n")
    result = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_DATA_LIBRARIES, "--smoke", "--json", str(tmp_path / "gpu.json"),
         "--report", str(report)],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((tmp_path / "gpu.json").read_text())
    sections = {k: v for k, v in results.items() if isinstance(v, dict) and "title" in v}
    assert set(sections) == {"a", "b", "c", "d", "e_qwen3", "e_deepone", "f", "g"}
    failed = {k: v.get("error") or v.get("skipped") for k, v in sections.items() if "error" in v or "skipped" in v}
    assert not failed, failed
    assert results["a"]["tokens_per_s"] > 0 and results["a"]["graph_breaks"] == 0
    # fp32 on CPU: HF and forgather, from the same weights on the same batches, end on the same loss.
    assert results["b"]["loss_relative_difference"] < 1e-4, results["b"]
    assert results["c"]["agree"], results["c"]
    text = report.read_text()
    assert "prose kept" in text and "<!-- BEGIN gpu -->" in text and "HF vs forgather loss" in text
