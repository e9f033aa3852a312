"""The resolved config as typed dataclasses: the only thing that crosses from the CLI to the ranks.

Defaults live in templates/base.yaml (the one source of truth); these classes only say what
shape and type each key has, so a key missing from every template is an error, not a silent
fallback.
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from .errors import ConfigError
from .typed import from_plain, to_plain
from .yamlio import Origins, dump_yaml, parse_yaml


@dataclass
class ModelSection:
    """Which model project and size to build, and how attention is computed."""

    project: str
    config: str
    preset: str | None  # a name in models.spec.PRESETS (checked when the shape is applied)
    target_params: int | str | None
    prefer_depth: bool
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2", "flex_attention"]
    arch: dict[str, Any]


@dataclass
class TrainSection:
    """The optimisation loop: batch, schedule, budget, precision, cadence of logging and eval."""

    init_model: bool
    init_from: str | None
    overwrite: bool
    batch_size: int
    grad_accum_steps: int
    learning_rate: float
    scale_lr: bool
    base_batch_tokens: int
    weight_decay: float
    betas: list[float]
    clip_grad_norm: float
    lr_schedule: Literal["cosine", "linear", "constant", "step", "wsd"]
    warmup_steps: int
    min_lr_ratio: float
    decay_fraction: float
    max_steps: int | None
    max_tokens: int | None
    step_cadence: float
    log_every: int
    eval_every: int
    eval_batches: int
    compile: bool | None
    precision: Literal["auto", "fp32", "bf16"]
    activation_checkpointing: bool
    activation_checkpointing_every: int
    peak_flops: float | None
    divergence_factor: float
    early_stopping_patience: int
    verbose_info: bool


@dataclass
class DistSection:
    """How ranks share the work: DDP, FSDP2 or dispatched batches; backend and device choice."""

    mode: Literal["ddp", "fsdp2", "dispatch"]
    backend: Literal["auto", "nccl", "gloo"]
    accelerator: bool
    init_timeout_minutes: float  # joining the job through the first training step (data, compile, first batch)
    step_timeout_minutes: float  # any collective after the first step: a hung rank is declared dead after this
    data_timeout_minutes: float  # `forgather data prepare` under torchrun: ranks meet once, when all are done
    fsdp_shard_size: int  # FSDP2: shard within groups of this many ranks, replicate across groups (HSDP); 0: all
    fsdp_sharded_grad_accum: bool  # FSDP2: reduce-scatter every micro-step, so accumulated gradients stay sharded


@dataclass
class CheckpointSection:
    """When checkpoints are written and kept, and what a resume restores."""

    save_strategy: Literal["no", "steps", "epoch"]
    save_every: int
    keep_last: int
    keep_best: int
    restore_dataset_state: bool
    allow_tokenizer_change: bool
    async_save: bool
    export_final: bool
    export_every: int


@dataclass
class RunConfig:
    """Everything one training run needs, fully resolved."""

    name: str
    description: str
    project_dir: str
    output_dir: str
    seed: int
    model: ModelSection
    data: dict[str, Any]
    train: TrainSection
    dist: DistSection
    checkpoint: CheckpointSection
    # Key paths whose values came from the environment, each with its `${env:...}` form: files and `config show`
    # carry that form, never the value (a token or password stays in the environment); ranks fill it back in.
    environment: dict[str, Any]

    def path(self, value: str) -> Path:
        """A path from the config, relative ones taken from the project directory."""
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else Path(self.project_dir) / candidate

    @property
    def run_dir(self) -> Path:
        return self.path(self.output_dir)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


# What each number may be, checked with the file:line it came from before anything runs (a batch of -3 looped
# forever building caches, 0 divided by zero, --lr nan trained on NaN, --max-steps -5 "finished" at once).
RANGES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("train.batch_size", lambda v: v >= 1, "at least 1"),
    ("train.grad_accum_steps", lambda v: v >= 1, "at least 1"),
    ("train.learning_rate", lambda v: _finite(v) and v > 0, "a finite number > 0"),
    ("train.base_batch_tokens", lambda v: v >= 1, "at least 1"),
    ("train.weight_decay", lambda v: _finite(v) and v >= 0, "a finite number >= 0"),
    ("train.betas", lambda v: len(v) == 2 and all(_finite(b) and 0 <= b < 1 for b in v), "two numbers in [0, 1)"),
    ("train.clip_grad_norm", lambda v: _finite(v) and v >= 0, "a finite number >= 0 (0: off)"),
    ("train.warmup_steps", lambda v: v >= 0, "at least 0"),
    ("train.min_lr_ratio", lambda v: _finite(v) and 0 <= v <= 1, "in [0, 1]"),
    ("train.decay_fraction", lambda v: _finite(v) and 0 < v <= 1, "in (0, 1]"),
    ("train.max_steps", lambda v: v is None or v >= 0, "at least 0"),
    ("train.max_tokens", lambda v: v is None or v >= 1, "at least 1 (or null)"),
    ("train.step_cadence", lambda v: _finite(v) and v > 0, "a finite number > 0"),
    ("train.log_every", lambda v: v >= 0, "at least 0 (0: the last step only)"),
    ("train.eval_every", lambda v: v >= 0, "at least 0 (0: off)"),
    ("train.eval_batches", lambda v: v >= 1, "at least 1"),
    ("train.peak_flops", lambda v: v is None or (_finite(v) and v > 0), "a finite number > 0 (or null)"),
    ("train.divergence_factor", lambda v: _finite(v) and v >= 0, "a finite number >= 0 (0: off)"),
    ("train.early_stopping_patience", lambda v: v >= 0, "at least 0 (0: off)"),
    ("train.activation_checkpointing_every", lambda v: v >= 1, "at least 1"),
    ("dist.fsdp_shard_size", lambda v: v >= 0, "at least 0 (0: shard over all ranks)"),
    ("checkpoint.save_every", lambda v: v >= 1, "at least 1"),
    ("checkpoint.keep_last", lambda v: v >= 0, "at least 0"),
    ("checkpoint.keep_best", lambda v: v >= 0, "at least 0"),
    ("checkpoint.export_every", lambda v: v >= 0, "at least 0 (0: off)"),
    ("dist.init_timeout_minutes", lambda v: _finite(v) and v > 0, "a finite number of minutes > 0"),
    ("dist.step_timeout_minutes", lambda v: _finite(v) and v > 0, "a finite number of minutes > 0"),
    ("dist.data_timeout_minutes", lambda v: _finite(v) and v > 0, "a finite number of minutes > 0"),
]


def check_ranges(config: RunConfig, origins: Origins) -> None:
    """ConfigError naming file:line (or flag), key and value for the first number out of its range."""
    for key, ok, rule in RANGES:
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if not ok(value):
            where = origins.get(key, "config")
            raise ConfigError(f"{where}: {key} is {value}; it must be {rule}")


def build_config(tree: dict[str, Any], origins: Origins) -> RunConfig:
    """Strictly type the resolved tree; unknown keys and wrong types name their file:line."""
    config = from_plain(RunConfig, tree, origins)
    # The model and data sections are typed by their own packages' specs (torch-free modules);
    # checking them here reports mistakes with file:line before any rank starts.
    from .data.spec import DataSpec
    from .models.spec import ModelSpec

    check_ranges(config, origins)
    from_plain(ModelSpec, config.model.arch, origins, "model.arch").validate()
    from_plain(DataSpec, config.data, origins, "data")
    if "batch_size" in config.data:  # one source of truth: the loader takes train.batch_size
        raise ConfigError(f"{origins.get('data.batch_size', 'data')}: data.batch_size is not a setting here; "
                          "set train.batch_size (sequences per rank per micro-step)")
    return config


def default_dist_section(**overrides: Any) -> DistSection:
    """templates/base.yaml's dist section with some values replaced (for entry points without a run config)."""
    from .resources import TEMPLATES_DIR
    from .yamlio import load_yaml

    defaults, _ = load_yaml(TEMPLATES_DIR / "base.yaml")
    return from_plain(DistSection, {**defaults["dist"], **overrides}, {"": "templates/base.yaml"})


def config_tree(config: RunConfig, show_environment: bool = False) -> dict[str, Any]:
    """The config as plain data, with values from the environment in their `${env:...}` form unless asked."""
    from .templates import set_path

    tree = to_plain(config)
    if not show_environment:
        for key_path, form in config.environment.items():
            set_path(tree, key_path, form)
    return tree


def render_config(config: RunConfig) -> str:
    """The YAML a run dir or a checkpoint keeps: no value from the environment in it."""
    return dump_yaml(config_tree(config))


def write_config(config: RunConfig, path: Path) -> None:
    """Write the resolved config that every rank reads (atomically, so ranks never see half a file). Each node's
    launcher writes it into the shared run dir: each writes a temp file of its own, then renames it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    tmp.write_text(render_config(config), encoding="utf-8")
    tmp.replace(path)


# Top-level keys older versions wrote into every run config and that nothing ever read (`plugins`).
RETIRED_KEYS = ("plugins",)


def read_config(path: Path) -> RunConfig:
    """Load a resolved config written by the launcher."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: resolved config not found; start runs with `forgather train`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the resolved config: {exc}") from None
    tree = parse_yaml(text, str(path))
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: not a resolved forgather config (expected a mapping of keys)")
    for key in RETIRED_KEYS:  # an older run's config still says them; they meant nothing then either
        tree.pop(key, None)
    _fill_missing_defaults(tree)
    tree.setdefault("environment", {})
    _fill_environment(tree, str(path))
    config = from_plain(RunConfig, tree, {"": str(path)})
    check_ranges(config, {})
    return config


def _fill_environment(tree: dict[str, Any], where: str) -> None:
    """Put this process's environment values back where the saved config holds `${env:...}` forms."""
    from .templates import expand_env, get_path, set_path

    forms = tree.get("environment")
    if not isinstance(forms, dict):
        raise ConfigError(f"{where}: 'environment' must map key paths to ${{env:...}} forms")
    for key_path, form in forms.items():
        try:
            get_path(tree, key_path)
        except KeyError:
            raise ConfigError(f"{where}: environment entry '{key_path}' names no key of the config") from None
        set_path(tree, key_path, expand_env(form, f"{where}: {key_path}"))


def _fill_missing_defaults(tree: dict[str, Any]) -> None:
    """Keys added to templates/base.yaml after a run's config was written take their default value, so the
    checkpoints of older runs stay readable (generate, eval); keys the config does have are never touched."""
    from .resources import TEMPLATES_DIR
    from .yamlio import load_yaml

    defaults, _ = load_yaml(TEMPLATES_DIR / "base.yaml")

    def fill(target: dict, source: dict) -> None:
        for key, value in source.items():
            if key not in target:
                if not (isinstance(value, str) and "${" in value):  # a reference has no meaning out of context
                    target[key] = value
            elif isinstance(value, dict) and isinstance(target[key], dict) and key != "arch":
                fill(target[key], value)

    fill(tree, {k: v for k, v in defaults.items() if k not in ("flags", "extends")})
