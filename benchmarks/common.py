"""What every benchmark records beside its figures: the machine, the versions, the date and its own command."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """CPU, cores, memory, Python and library versions of this machine (GPU name when one is used)."""
    info: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:  # absent on a bare GPU machine (benchmarks.gpu needs only torch, transformers, tokenizers)
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def command() -> str:
    """This benchmark's own command line, as typed from the repository root."""
    module = Path(sys.argv[0]).with_suffix("").name
    return " ".join(["python -m benchmarks." + module, *sys.argv[1:]])


def spread(values: list[float]) -> dict[str, float]:
    """median, min, max and count of a list of measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def write_json(path: Path | None, results: dict[str, Any]) -> None:
    """Write results with the machine and command, when a path was given."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": command(), "machine": machine(), **results}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
