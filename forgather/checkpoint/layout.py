"""Names inside a checkpoints root: step directories, temp directories, and the files in each."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

MODEL_FILE = "model.safetensors"  # an unsharded model's weights (FSDP2: model/shard-R-of-W.safetensors)
OPTIMIZER_DIR = "optimizer"
TRAINER_STATE_FILE = "trainer_state.json"
DATA_STATE_FILE = "data_state.json"
CONFIG_FILE = "config.yaml"
# Each launch writes the config its ranks read to a file of its own, RUN_DIR/config.launch-<id>.yaml, and rank 0
# moves it over config.yaml (adopt_launch_config) only once the run is under way: a launch that is refused or fails
# first (bad data, a resume check, the run dir's lock held by another job) leaves the run's config.yaml as it was,
# and two launches at once never read each other's settings. A restarted attempt that still finds its launch file
# has not replaced anything yet (a start-over starts over again); one that does not reads config.yaml.
LAUNCH_CONFIG_PREFIX = "config.launch-"
LAUNCHED_CONFIG_ENV = "FORGATHER_LAUNCHED_CONFIG"  # set by a rank to the file it was launched on (run.py)
START_OVER_RECORD = "start-over.json"  # the SLURM job whose start-over last replaced the run (a requeue asks)
MANIFEST_FILE = "manifest.json"
RNG_DIR = "rng"

# Anything named step-*.tmp is a partial or being-deleted directory: never loaded, removed by the next save.
TMP_SUFFIX = ".tmp"
_STEP_RE = re.compile(r"^step-(\d+)$")


def step_dir_name(step: int) -> str:
    """The directory name for a step: step-000200 (wider past 999999)."""
    if step < 0:
        raise ValueError(f"checkpoint step must be >= 0, got {step}")
    return f"step-{step:06d}"


def parse_step(name: str) -> int | None:
    """The step encoded in a complete checkpoint directory name, or None for anything else."""
    match = _STEP_RE.match(name)
    return int(match.group(1)) if match else None


def step_dir(root: Path, step: int) -> Path:
    """Where the checkpoint for `step` lives once complete."""
    return Path(root) / step_dir_name(step)


def tmp_dir(root: Path, step: int, tag: str = "") -> Path:
    """A scratch name for `step` that listing ignores (tag distinguishes in-progress from retired)."""
    return Path(root) / f"{step_dir_name(step)}{'.' + tag if tag else ''}{TMP_SUFFIX}"


def rng_file(rank: int) -> str:
    """Relative path of one rank's RNG state."""
    return f"{RNG_DIR}/rank-{rank}.pt"


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete-looking step directories under root as (step, path), oldest first; temp dirs are ignored."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        step = parse_step(child.name)
        if step is not None and child.is_dir():
            found.append((step, child))
    return sorted(found)


def list_tmp_dirs(root: Path) -> list[Path]:
    """Leftovers of interrupted saves or deletions."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith("step-") and p.name.endswith(TMP_SUFFIX))


def has_checkpoints(root: Path) -> bool:
    """Whether root holds any checkpoint directory (verified or not), for the --init-model refusal."""
    return bool(list_checkpoints(root))


def launch_config_path(run_dir: Path) -> Path:
    """The config file this launch's ranks read, named after this launcher's host and pid: every launch has its
    own, also two of one SLURM job (each node's launcher of a multi-node job writes its own)."""
    return Path(run_dir) / f"{LAUNCH_CONFIG_PREFIX}{socket.gethostname()}-{os.getpid()}.yaml"


def record_start_over(run_dir: Path, environ: dict[str, str]) -> None:
    """Rank 0, once a start-over has replaced the previous run: which SLURM job did it (start_over_done_by)."""
    (Path(run_dir) / START_OVER_RECORD).write_text(json.dumps({"slurm_job": environ.get("SLURM_JOB_ID")}) + "\n",
                                                   encoding="utf-8")


def start_over_done_by(run_dir: Path, slurm_job: str | None) -> bool:
    """Whether SLURM job `slurm_job` already replaced the run with its start-over. A requeue of that job resumes
    then; otherwise (its first start died or failed before replacing, however early) it starts over again."""
    try:
        record = json.loads((Path(run_dir) / START_OVER_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(slurm_job) and isinstance(record, dict) and record.get("slurm_job") == slurm_job


def launched_config() -> Path | None:
    """The launch file this rank was started on, if it was started on one."""
    path = os.environ.get(LAUNCHED_CONFIG_ENV)
    return Path(path) if path and Path(path).name.startswith(LAUNCH_CONFIG_PREFIX) else None


def adopt_launch_config(run_dir: Path, launched: Path | None) -> None:
    """Rank 0, once the run is under way: this launch's settings become the run's config.yaml, and launch files
    that earlier launches left (refused or failed ones) go; a newer one belongs to a launch still starting."""
    if launched is None or not launched.exists():
        return
    since = launched.stat().st_mtime
    launched.replace(Path(run_dir) / CONFIG_FILE)
    for stale in Path(run_dir).glob(f"{LAUNCH_CONFIG_PREFIX}*.yaml"):
        try:
            if stale.stat().st_mtime <= since:
                stale.unlink()
        except OSError:
            pass  # gone already, or not ours to remove


def start_over_applies(launched: Path | None, init_model: bool, restarts: int) -> bool:
    """Whether --init-model applies to this attempt of a torchrun job (--max-restarts; `restarts` counts them).
    Always on the first; on a restart only while the attempt it repeats has not yet replaced the previous run (the
    launch file the launcher wrote before torchrun started is still there). Once it has, the restart resumes the
    new run's checkpoints rather than delete them (--overwrite) or refuse them."""
    return init_model and (restarts == 0 or (launched is not None and launched.exists()))


def check_fresh_start(root: Path, init_model: bool, overwrite: bool) -> None:
    """--init-model refuses to replace checkpoints unless --overwrite (the launcher checks before it writes the run's
    config, the ranks again). CheckpointError names the way on."""
    from ..errors import CheckpointError

    if init_model and not overwrite and has_checkpoints(root):
        raise CheckpointError(f"{root} already holds checkpoints; run `forgather train` to resume, or add "
                              "--overwrite to --init-model to delete them and start over")
