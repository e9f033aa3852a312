"""What installing forgather costs, from a wheel into a fresh venv, and that the installed copy trains.

Usage: python -m benchmarks.install_bench [--json FILE]

1. `pip wheel . --no-deps` (the package as users get it: templates and model projects inside, no repo beside).
2. A fresh venv: `pip install torch==<this torch>` (the local CPU wheel on our machines), then the wheel with its
   dependencies; installed distributions are counted and the venv's size is measured, torch's share apart.
3. From a directory outside the repository, the installed `forgather` trains a copy of projects/smollm_pretrain for
   two steps (`forgather train --init-model --no-accelerator --max-steps 2`): installable anywhere, checked.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import write_json

REPO = Path(__file__).resolve().parents[1]
NOT_INSTALLED_BY_US = {"pip", "setuptools", "wheel"}  # what `python -m venv` brings


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, argv))} failed (exit {done.returncode}):\n{done.stdout[-2000:]}"
                         f"\n{done.stderr[-3000:]}")
    return done


def tree_bytes(path: Path) -> int:
    """Bytes of regular files under path (what `du --apparent-size` counts)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import torch  # only for its version: the venv gets the same build

    torch_version = torch.__version__.split("+")[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        started = time.perf_counter()
        _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(tmp_path / "wheels")], cwd=REPO)
        wheel = next((tmp_path / "wheels").glob("forgather-*.whl"))
        wheel_seconds = time.perf_counter() - started
        venv = tmp_path / "venv"
        _run([sys.executable, "-m", "venv", str(venv)])
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        _run([*pip, f"torch=={torch_version}"])
        started = time.perf_counter()
        _run([*pip, str(wheel)])
        install_seconds = time.perf_counter() - started
        listed = json.loads(_run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"]).stdout)
        packages = sorted(p["name"] for p in listed if p["name"].lower() not in NOT_INSTALLED_BY_US)
        site = site_packages(venv)
        sizes = {d.name: tree_bytes(d) for d in site.iterdir() if d.is_dir() and not d.name.endswith(".dist-info")}
        total = tree_bytes(venv)
        torch_bytes = sum(v for k, v in sizes.items() if k == "torch" or k.startswith(("nvidia", "triton")))
        largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:8]

        project = tmp_path / "elsewhere" / "smollm_pretrain"
        shutil.copytree(REPO / "projects" / "smollm_pretrain", project)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(OMP_NUM_THREADS="1", HF_HOME=str(tmp_path / "hf"), TMPDIR=str(tmp_path),
                   PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
        started = time.perf_counter()
        trained = _run([str(venv / "bin" / "forgather"), "train", "--init-model", "--no-accelerator", "--max-steps", "2"],
                       cwd=project, env=env)
        train_seconds = time.perf_counter() - started
        assert list((project / "output" / "checkpoints").glob("*")), trained.stderr[-2000:]

    mib = 2**20
    print("| measure | value |\n|---|---|")
    print(f"| distributions installed (beyond pip/setuptools) | {len(packages)} |")
    print(f"| venv size | {total / mib:,.0f} MiB |")
    print(f"| of which torch (+ nvidia/triton if any) | {torch_bytes / mib:,.0f} MiB |")
    print(f"| everything else | {(total - torch_bytes) / mib:,.0f} MiB |")
    print(f"| `pip wheel . --no-deps` | {wheel_seconds:.1f} s |")
    print(f"| `pip install forgather-*.whl` (torch already there) | {install_seconds:.1f} s |")
    print(f"| installed `forgather train --init-model --max-steps 2` outside the repo (default data, tokenizer "
          f"training included) | {train_seconds:.1f} s, checkpoint written |")
    print("\nLargest packages: " + ", ".join(f"{name} {size / mib:,.0f} MiB" for name, size in largest))
    print("\nInstalled: " + ", ".join(packages))
    write_json(args.json, {"packages": packages, "venv_bytes": total, "torch_bytes": torch_bytes,
                           "largest": dict(largest), "wheel_seconds": wheel_seconds,
                           "install_seconds": install_seconds, "train_seconds": train_seconds})


if __name__ == "__main__":
    main()
