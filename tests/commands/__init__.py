"""Tests of the `forgather` subcommands, run as a user's shell would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TORCH_PROBE = (
    "import sys; from forgather.cli import main; rc = main(sys.argv[1:]); "
    "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'TORCH_FREE', file=sys.stderr); sys.exit(rc)"
)


def forgather(*args: str, cwd: Path, probe_torch: bool = False) -> subprocess.CompletedProcess:
    """`python -m forgather.cli ARGS` in a fresh interpreter; with probe_torch, stderr ends with TORCH_FREE/IMPORTED."""
    head = ["-c", TORCH_PROBE] if probe_torch else ["-m", "forgather.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *head, *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=120)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The one `forgather: error: ...` line a user error ends stderr with (progress lines may come before it)."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("forgather: error: ") and "Traceback" not in result.stderr, result.stderr
    assert sum(line.startswith("forgather: error: ") for line in lines) == 1, result.stderr
    return lines[-1]
