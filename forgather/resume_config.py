"""What a resumed run trains with: its own saved config, changed only by the flags given now (torch-free).

Defined once, here:
- The run's saved config (RUN_DIR/config.yaml, written when it started or last resumed) is the source of
  truth. Edits to the project's files since then do not change a running experiment; they are listed.
- A flag given now that changes a saved value is applied visibly (printed; the next checkpoint's
  config.yaml records it), or refused when it cannot apply: another model shape (the checkpoint's weights
  do not fit), or another data stream while the data position is restored.
- Flags that say what to do at this launch (--init-model, --overwrite, --no-restore-dataset-state,
  --allow-tokenizer-change, --verbose-info, --no-accelerator) are never inherited from an earlier launch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RunConfig, config_tree, read_config
from .errors import ConfigError
from .typed import from_plain
from .yamlio import Origins

# dist.accelerator: --no-accelerator says where this launch runs (a run started on CPU resumes on the GPUs).
LAUNCH_INTENTS = ("train.init_model", "train.overwrite", "checkpoint.restore_dataset_state",
                  "checkpoint.allow_tokenizer_change", "train.verbose_info", "dist.accelerator")
NOT_SETTINGS = ("project_dir", "environment")  # where the project lives, and bookkeeping
MODEL_KEYS = ("model.arch.", "model.project", "model.config", "model.preset", "model.target_params",
              "model.prefer_depth")


@dataclass
class Reconciled:
    """The config a resumed run uses, the flag changes applied to it and the project edits ignored."""

    config: RunConfig
    changes: list[tuple[str, Any, Any, str]] = field(default_factory=list)  # key, saved, now, flag
    ignored: list[tuple[str, Any, Any]] = field(default_factory=list)  # key, saved, project now

    def report(self) -> list[str]:
        """Lines for the console: what changes, what the project would have changed but does not."""
        lines = [f"forgather: resuming with {key} changed from {_show(old)} to {_show(new)} ({flag})"
                 for key, old, new, flag in self.changes]
        if self.ignored:
            shown = ", ".join(f"{key} {_show(old)} (project: {_show(new)})" for key, old, new in self.ignored[:6])
            more = f" and {len(self.ignored) - 6} more" if len(self.ignored) > 6 else ""
            lines.append(f"forgather: the run keeps its own settings where the project's files now say otherwise: "
                         f"{shown}{more}; pass flags to change them")
        return lines


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def budget_behind_the_run(step: int, total: int) -> ConfigError:
    """A resume whose step budget is behind its checkpoint (the launcher checks the newest, the ranks the loaded)."""
    return ConfigError(f"the run is at step {step}, past the {total} steps train.max_steps/max_tokens give; "
                       f"ask for more than {step} to continue it, or start over with --init-model")


def saved_config(run_dir: Path) -> RunConfig | None:
    """The run's saved config (RUN_DIR/config.yaml), None when the run dir holds none."""
    path = Path(run_dir) / "config.yaml"
    return read_config(path) if path.is_file() else None


def reconcile(fresh: RunConfig, origins: Origins, saved: RunConfig) -> Reconciled:
    """The saved config with this launch's flags applied; ConfigError when a flag cannot apply to the run."""
    old, new = _leaves(config_tree(saved)), _leaves(config_tree(fresh))
    flagged = {key: origin for key, origin in origins.items() if origin.startswith(("flag --", "--set "))}
    result = config_tree(saved)
    reconciled = Reconciled(fresh)
    for key in sorted(set(old) | set(new)):
        if key.split(".")[0] in NOT_SETTINGS:
            continue
        now, before = new.get(key), old.get(key)
        if key in LAUNCH_INTENTS:
            _set(result, key, now)
        elif now != before and _flagged(key, flagged):
            _set(result, key, now)
            reconciled.changes.append((key, before, now, _flagged(key, flagged)))
        elif now != before:
            reconciled.ignored.append((key, before, now))
    _refuse_what_cannot_apply(reconciled.changes, fresh, saved)
    result["project_dir"] = fresh.project_dir
    result["environment"] = {**saved.environment, **fresh.environment}
    reconciled.config = from_plain(RunConfig, _expanded(result, reconciled.config), {"": "the run's saved config"})
    return reconciled


def _flagged(key: str, flagged: dict[str, str]) -> str | None:
    """The flag that set `key` (or a map above it, as --model-config sets model.arch through model.config)."""
    for origin_key, origin in flagged.items():
        if key == origin_key or key.startswith(origin_key + "."):
            return origin.removeprefix("flag ")
    return None


def _expanded(tree: dict, fresh: RunConfig) -> dict:
    """Environment forms filled with this process's values, as a rank would read them."""
    from .templates import expand_env

    for key, form in tree["environment"].items():
        try:
            _set(tree, key, expand_env(form, key))
        except ConfigError:
            continue  # not set here: the ranks say so when they read the config
    return tree


def _refuse_what_cannot_apply(changes: list[tuple[str, Any, Any, str]], fresh: RunConfig, saved: RunConfig) -> None:
    model_flags = sorted({f for k, _, _, f in changes if k.startswith(MODEL_KEYS)})
    arch_now, arch_saved = _leaves(fresh.model.arch), _leaves(saved.model.arch)
    shape = [(k, arch_saved.get(k), arch_now.get(k)) for k in sorted(set(arch_now) | set(arch_saved))
             if arch_now.get(k) != arch_saved.get(k)]
    if model_flags and shape:
        detail = ", ".join(f"{k} {_show(a)} → {_show(b)}" for k, a, b in shape[:4])
        raise ConfigError(f"{' '.join(model_flags)} would change the model ({detail}), which this run's checkpoints "
                          "cannot load; start a new run (--output-dir DIR) or start over (--init-model --overwrite)")
    _refuse_what_the_model_or_tokenizer_cannot_follow(changes, saved)
    data = [(k, a, b, f) for k, a, b, f in changes if k.startswith("data.") and k != "data.num_workers"]
    if data and fresh.checkpoint.restore_dataset_state:
        key, before, now, flag = data[0]
        raise ConfigError(f"{flag} changes the data stream ({key} {_show(before)} → {_show(now)}), but the checkpoint's "
                          "data position belongs to the old one: add --no-restore-dataset-state to continue the "
                          "weights on the new stream")


def _refuse_what_the_model_or_tokenizer_cannot_follow(changes: list[tuple[str, Any, Any, str]],
                                                       saved: RunConfig) -> None:
    """A fresh run's model follows its data (follow_data.py); a resumed run keeps its model and its tokenizer, so a
    flag that would need them to follow is refused rather than recorded as a change that does not happen."""
    changed = {key: (before, now, flag) for key, before, now, flag in changes}
    positions = saved.model.arch.get("max_position_embeddings")
    if "data.block_size" in changed and isinstance(positions, int):
        before, now, flag = changed["data.block_size"]
        if isinstance(now, int) and now > positions:
            raise ConfigError(f"{flag} makes data.block_size {now}, past this run's model's max_position_embeddings "
                              f"{positions} (a resumed run keeps its model): use at most {positions}, or start a new "
                              "run (--output-dir DIR)")
    tokenizer = saved.data.get("tokenizer") or {}
    if "data.tokenizer.vocab_size" in changed and not tokenizer.get("path"):
        before, now, flag = changed["data.tokenizer.vocab_size"]
        raise ConfigError(f"{flag} changes data.tokenizer.vocab_size ({_show(before)} → {_show(now)}), but a resumed run "
                          "keeps the tokenizer its checkpoints were trained with; start a new run (--output-dir DIR) "
                          "or start over (--init-model --overwrite) to train another")
