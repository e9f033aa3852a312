"""Names inside a checkpoints root: step directories, temp directories, and the files in each."""

from __future__ import annotations

import re
from pathlib import Path

MODEL_FILE = "model.safetensors"  # an unsharded model's weights (FSDP2: model/shard-R-of-W.safetensors)
OPTIMIZER_DIR = "optimizer"
TRAINER_STATE_FILE = "trainer_state.json"
DATA_STATE_FILE = "data_state.json"
CONFIG_FILE = "config.yaml"
# A start-over (--init-model) of an existing run dir launches its ranks on this file and leaves RUN_DIR/config.yaml
# the old run's until the new run has replaced it (clear_previous_run moves it over config.yaml). A start that fails
# first leaves the old run whole, settings included; a restarted attempt that still finds it starts over again.
NEXT_CONFIG_FILE = "config.next.yaml"
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


def start_over_applies(run_dir: Path, init_model: bool, restarts: int) -> bool:
    """Whether --init-model applies to this start of a job that may be a restart of it (a torchrun --max-restarts
    restart, a SLURM requeue; `restarts` counts them). Always on the first start; on a restart only while the start
    it repeats has not yet replaced the previous run (RUN_DIR/config.next.yaml is still there). Once it has, the
    restart resumes the new run's checkpoints rather than delete them (--overwrite) or refuse them."""
    return init_model and (restarts == 0 or (Path(run_dir) / NEXT_CONFIG_FILE).exists())


def check_fresh_start(root: Path, init_model: bool, overwrite: bool) -> None:
    """--init-model refuses to replace checkpoints unless --overwrite (the launcher checks before it writes the run's
    config, the ranks again). CheckpointError names the way on."""
    from ..errors import CheckpointError

    if init_model and not overwrite and has_checkpoints(root):
        raise CheckpointError(f"{root} already holds checkpoints; run `forgather train` to resume, or add "
                              "--overwrite to --init-model to delete them and start over")
