"""What `forgather generate` and `forgather eval` point at: a checkpoint, a model dir, a run or a project.

Resolving the path, verifying the checkpoint and finding the tokenizer are torch-free (the CLI does
them before anything heavy starts); `load_model` imports torch when called.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import layout
from .checkpoint.manifest import find_latest, verify_manifest
from .config import RunConfig, build_config, read_config
from .data.spec import DataSpec, TokenizerSpec
from .data.tokenizer import Tokenizer, load_tokenizer
from .errors import CheckpointError, DataError, ModelError, UserError
from .project import compose_project, find_project, resolve

HF_CONFIG = "config.json"
RUN_CONFIG = "config.yaml"  # the resolved config `forgather train` writes to RUN_DIR and into each checkpoint


@dataclass
class Target:
    """A model directory in HF format, and the resolved run config it was trained with (None if unknown)."""

    model_dir: Path
    config: RunConfig | None
    config_file: Path | None
    checkpoint: bool

    def describe(self) -> str:
        """One line for stderr: which weights are used."""
        kind = "checkpoint" if self.checkpoint else "model"
        return f"{kind} {self.model_dir}" + (f" (run config {self.config_file})" if self.config_file else "")


def _run_config(path: Path) -> RunConfig | None:
    return read_config(path) if path.is_file() else None


def _latest(run_dir: Path, what: str) -> Target:
    """The newest checkpoint of a run that verifies (find_latest hashes it, and logs any it skips)."""
    root = run_dir / "checkpoints"
    latest = find_latest(root)
    if latest is None:
        why = "holds none" if not layout.list_checkpoints(root) else "has none that verifies"
        raise CheckpointError(f"{what}: {root} {why}; train first (`forgather train`), or point at a model "
                              f"directory such as {run_dir / 'initial_model'}")
    return _checkpoint(latest, verified=True)


def _checkpoint(path: Path, verified: bool = False) -> Target:
    if not verified:
        verify_manifest(path)  # a corrupted or partial checkpoint stops here with the file named
    config_file = path / RUN_CONFIG
    return Target(path, _run_config(config_file), config_file if config_file.is_file() else None, True)


def _project_run_dir(start: Path | None, config_name: str | None) -> Path:
    """RUN_DIR of the project at `start` (or found by walking up from the cwd)."""
    tree, origins = resolve(compose_project(find_project(start, config_name)))
    return build_config(tree, origins).run_dir


def resolve_target(path: str | None, project: str | None = None, config_name: str | None = None) -> Target:
    """The weights and run config PATH means (default: the latest checkpoint of the project at -p or the cwd)."""
    if path is None:
        return _latest(_project_run_dir(Path(project) if project else None, config_name), "the project")
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"{path}: no such file or directory; give a checkpoint (RUN_DIR/checkpoints/step-NNNNNN), "
                        "a model directory with config.json, a run directory or a project directory")
    if not p.is_dir():
        raise UserError(f"{path}: not a directory; give a checkpoint, model, run or project directory")
    # A step-named directory is a checkpoint (an incomplete one is named as such), unless it is a model directory:
    # RUN_DIR/exports/step-NNNNNN, the export every run ends with, has config.json and no manifest.
    exported = (p / HF_CONFIG).is_file() and not (p / layout.MANIFEST_FILE).is_file()
    if (p / layout.MANIFEST_FILE).is_file() or (layout.parse_step(p.name) is not None and not exported):
        return _checkpoint(p)
    if (p / HF_CONFIG).is_file():
        # RUN_DIR/initial_model and RUN_DIR/exports/step-N have no config.yaml of their own; the run's is above.
        candidates = [p / RUN_CONFIG] + ([p.parent / RUN_CONFIG] if p.name == "initial_model" else []) + (
            [p.parent.parent / RUN_CONFIG] if p.parent.name == "exports" else [])
        for candidate in candidates:
            if candidate.is_file():
                return Target(p, read_config(candidate), candidate, False)
        return Target(p, None, None, False)
    if (p / "project.yaml").is_file():
        return _latest(_project_run_dir(p, config_name), str(p))
    if (p / "checkpoints").is_dir() or (p / RUN_CONFIG).is_file():
        return _latest(p, str(p))
    if p.name == "checkpoints" and p.is_dir():
        return _latest(p.parent, str(p))
    raise UserError(f"{path}: not a checkpoint (no {layout.MANIFEST_FILE}), model directory (no {HF_CONFIG}), "
                    "run directory (no checkpoints/) or project (no project.yaml)")


# -------------------------------------------------------------------------------------------- tokenizer


def _hf_special(model_dir: Path, role: str) -> str | None:
    """bos_token/eos_token from an HF tokenizer_config.json (a string or {"content": ...})."""
    try:
        value = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8")).get(f"{role}_token")
    except (OSError, ValueError, AttributeError):
        return None
    return value.get("content") if isinstance(value, dict) else value if isinstance(value, str) else None


def tokenizer_spec(target: Target) -> TokenizerSpec:
    """The run's BOS/EOS policy; without a run config, no BOS/EOS added and the ids HF's files name."""
    if target.config is not None:
        fields: dict[str, Any] = dict(target.config.data.get("tokenizer") or {})
        if fields.get("path") and "://" not in str(fields["path"]):  # URLs are fetched into the data cache
            fields["path"] = str(target.config.path(fields["path"]))
        return TokenizerSpec(**fields)
    return TokenizerSpec(add_bos=False, add_eos=False, bos_token=_hf_special(target.model_dir, "bos"),
                         eos_token=_hf_special(target.model_dir, "eos"))


def _trained_tokenizer(config: RunConfig) -> Path | None:
    """The BPE the run trained on its sources (under the data cache), if it is still there; never trains."""
    from .data.sources import sources_digest, split_sources
    from .data.tokenizer import trained_path

    spec = DataSpec.from_dict(config.data, base_dir=config.project_dir)
    train, _ = split_sources(spec)  # as open_data hands them to get_tokenizer: their identities key the file
    path = trained_path(spec.resolved_cache_dir(), sources_digest(train), spec.tokenizer.vocab_size)
    return path if path.is_file() else None


def find_tokenizer_file(target: Target, override: str | None = None) -> Path | None:
    """--tokenizer, else tokenizer.json beside the weights, else the run's data.tokenizer.path or trained BPE."""
    if override:
        path = Path(override).expanduser()
        path = path / "tokenizer.json" if path.is_dir() else path
        if not path.is_file():
            raise DataError(f"--tokenizer {override}: no such tokenizer.json")
        return path
    beside = target.model_dir / "tokenizer.json"
    if beside.is_file():
        return beside
    if target.config is None:
        return None
    configured = tokenizer_spec(target).path
    if configured and "://" in configured:
        from .data.tokenizer import fetch_tokenizer

        cache = DataSpec.from_dict(target.config.data, base_dir=target.config.project_dir).resolved_cache_dir()
        return fetch_tokenizer(configured, cache)
    if configured:
        return Path(configured)
    try:
        return _trained_tokenizer(target.config)
    except DataError:  # the training sources moved or changed: nothing to find the trained file by
        return None


def open_tokenizer(target: Target, override: str | None = None) -> Tokenizer:
    """The tokenizer the model was trained with; DataError naming --tokenizer when none can be found."""
    path = find_tokenizer_file(target, override)
    if path is None:
        raise DataError(f"no tokenizer found for {target.model_dir} (no tokenizer.json beside the weights"
                        + (", and the run's trained tokenizer is not in its data cache" if target.config else "")
                        + "); pass --tokenizer PATH/tokenizer.json")
    return load_tokenizer(tokenizer_spec(target), str(path))


# ------------------------------------------------------------------------------------------ eval data

BARE_BLOCK_SIZE = 2048  # a model dir without a run config: block size when the model allows as much
_ROW_SLICE = re.compile(r"(?P<path>.+)\[(?P<start>[^:\]]*):(?P<stop>[^:\]]*)\]")
_BOUND = re.compile(r"-?\d+%?")
_SLICEABLE = (".parquet", ".jsonl", ".json")


def parse_data_argument(text: str) -> tuple[str, str]:
    """--data FILE or FILE[START:STOP] (rows; integers or percentages) as (path, split such as 'train[1000:]')."""
    match = _ROW_SLICE.fullmatch(text)
    if match is None or Path(text).expanduser().exists():  # a file whose name really ends in [..] is a file
        path, split = text, "train"
    else:
        path, split = match["path"], f"train[{match['start'].strip()}:{match['stop'].strip()}]"
        bounds = [b.strip() for b in (match["start"], match["stop"]) if b.strip()]
        if not all(_BOUND.fullmatch(b) and (not b.endswith("%") or abs(int(b[:-1])) <= 100) for b in bounds):
            raise DataError(f"--data {text}: a row slice is [START:STOP] of row numbers or percentages, "
                            "e.g. file.parquet[1000:], file.jsonl[:500] or file.jsonl[:10%]")
        if not path.lower().endswith(_SLICEABLE):
            raise DataError(f"--data {text}: a row slice applies to .parquet and .jsonl files (rows are documents); "
                            f"drop [{match['start']}:{match['stop']}] or convert {Path(path).name} to .jsonl")
    if not Path(path).expanduser().exists():
        bracket = re.fullmatch(r"(.+)\[[^\]]*\]", text)
        if match is None and bracket and Path(bracket[1]).expanduser().exists():  # FILE[abc]: the file is there
            raise DataError(f"--data {text}: a row slice is [START:STOP] of row numbers or percentages, "
                            "e.g. file.parquet[1000:], file.jsonl[:500] or file.jsonl[:10%]")
        raise DataError(f"--data {path}: no such file or directory")
    return str(Path(path).expanduser().resolve()), split


@dataclass
class EvalSettings:
    """How `forgather eval` cuts the documents into blocks: block size and the EOS appended after each document."""

    block_size: int
    add_eos: bool
    eos_token: str | None  # None with add_eos: the tokenizer's usual end-of-text token
    why: str

    def describe(self) -> str:
        """'blocks of 64 tokens, EOS <|endoftext|> after each document (the run's data settings)'."""
        eos = (f"EOS {self.eos_token or 'token'} after each document" if self.add_eos else "no EOS between documents")
        return f"blocks of {self.block_size:,} tokens, {eos} ({self.why})"


def _model_config(model_dir: Path) -> dict[str, Any]:
    try:
        config = json.loads((model_dir / HF_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def model_eos_token(model_dir: Path, tokenizer: Path | None) -> str | None:
    """The EOS the model declares (config.json eos_token_id, as forgather and HF write it), as tokenizer text."""
    eos_id = _model_config(model_dir).get("eos_token_id")
    eos_id = eos_id[0] if isinstance(eos_id, list) and eos_id else eos_id
    if not isinstance(eos_id, int) or tokenizer is None:
        return _hf_special(model_dir, "eos")
    from tokenizers import Tokenizer as HFTokenizer

    try:
        return HFTokenizer.from_file(str(tokenizer)).id_to_token(eos_id) or _hf_special(model_dir, "eos")
    except Exception:  # an unreadable tokenizer is reported where the data is opened, with its path
        return _hf_special(model_dir, "eos")


def eval_settings(target_config: RunConfig | None, model_dir: Path, tokenizer: Path | None,
                  block_size: int | None = None) -> EvalSettings:
    """The run's block size and EOS policy; for a bare model dir, min(max positions, 2048) and its declared EOS.
    A --block-size past the model's positions is refused: the loss there measures positions it never trained."""
    positions = _model_config(model_dir).get("max_position_embeddings")
    if block_size and isinstance(positions, int) and 0 < positions < block_size:
        raise UserError(f"--block-size {block_size} is past the model's max_position_embeddings {positions} "
                        f"({model_dir / 'config.json'}); use at most {positions}")
    if target_config is not None:
        fields = target_config.data.get("tokenizer") or {}
        return EvalSettings(block_size or int(target_config.data["block_size"]), bool(fields.get("add_eos", True)),
                            fields.get("eos_token"), "--block-size" if block_size else "the run's data settings")
    default = min(positions, BARE_BLOCK_SIZE) if isinstance(positions, int) and positions > 0 else BARE_BLOCK_SIZE
    eos = model_eos_token(model_dir, tokenizer)
    why = "--block-size" if block_size else f"no run config: min(max_position_embeddings, {BARE_BLOCK_SIZE})"
    why += ", EOS from config.json" if eos is not None else ", config.json names no EOS"
    return EvalSettings(block_size or default, eos is not None, eos, why)


# ------------------------------------------------------------------------------------------------ model


def load_model(model_dir: Path, device: Any, attn_implementation: str = "sdpa") -> Any:
    """The Transformer with the weights of an HF-format model dir on `device`, in eval mode (fp32 on CPU)."""
    import torch

    from .models.hf import load_hf
    from .models.transformer import Transformer

    spec, state = load_hf(model_dir)
    with torch.device("meta"):  # shapes only; load_state_dict(assign=True) supplies the storage
        model = Transformer(spec, attn_implementation)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ModelError(f"{model_dir}: weights do not match the {spec.architecture} model: {detail}") from None
    model.tie_weights()
    device = torch.device(device)
    dtype = torch.float32 if device.type == "cpu" else None  # bf16 matmuls on CPU are slow and imprecise
    return model.to(device=device, dtype=dtype).eval()
