"""Find a project, compose its YAML (project + templates + model project + flags) into one config."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data.spec import named_sources
from .errors import ConfigError, ModelError
from .flags import FlagSpec, flag_overrides, parse_flag_specs
from .follow_data import follow_data
from .models.spec import SHAPE_FIELDS, parse_param_count, preset, shape_for_target_params
from .resources import model_project_dir
from .resources import TEMPLATES_DIR
from .templates import all_paths, compose, deep_merge, get_path, interpolate, set_path, suggest
from .yamlio import Origins

PROJECT_FILE = "project.yaml"


@dataclass
class Project:
    """A project directory and the config file chosen in it."""

    dir: Path
    config_file: Path

    @property
    def name(self) -> str:
        return self.dir.name


def find_project(start: Path | None = None, config: str | None = None) -> Project:
    """Walk up from `start` (default: cwd) to the nearest directory holding project.yaml."""
    origin = (start or Path.cwd()).resolve()
    for directory in (origin, *origin.parents):
        if (directory / PROJECT_FILE).is_file():
            return Project(directory, config_path(directory, config))
    raise ConfigError(
        f"no {PROJECT_FILE} found in {origin} or any parent; cd into a project or pass -p DIR "
        "(`forgather ls` lists projects)"
    )


def config_path(project_dir: Path, config: str | None) -> Path:
    """project.yaml, or configs/<name>.yaml when a config is named."""
    if not config:
        return project_dir / PROJECT_FILE
    name = config if config.endswith(".yaml") else config + ".yaml"
    path = project_dir / "configs" / name
    if not path.is_file():
        available = list_configs(project_dir)
        raise ConfigError(f"{project_dir}: no config '{config}'{suggest(config, available)}; available: {available}")
    return path


def list_configs(project_dir: Path) -> list[str]:
    """Names of the selectable configs under a project's configs/ directory."""
    configs = project_dir / "configs"
    return sorted(p.stem for p in configs.glob("*.yaml")) if configs.is_dir() else []


@dataclass
class ComposedConfig:
    """A project's merged config before flags and interpolation, plus its declared flags."""

    tree: dict[str, Any]
    origins: Origins
    flags: list[FlagSpec]
    project: Project


def compose_project(project: Project) -> ComposedConfig:
    """Merge the chosen config with everything it extends; split off the `flags:` declarations."""
    tree, origins = compose(project.config_file, [project.dir, TEMPLATES_DIR])
    flags = parse_flag_specs(tree.pop("flags", None), origins)
    for path in [p for p in origins if p == "flags" or p.startswith("flags.")]:
        del origins[path]
    return ComposedConfig(tree, origins, flags, project)


def apply_flags(composed: ComposedConfig, args: argparse.Namespace) -> None:
    """Write the user's flag values into the config, recording each as its own origin."""
    for spec, value in flag_overrides(args, composed.flags):
        try:
            get_path(composed.tree, spec.key)
        except KeyError:
            hint = suggest(spec.key, all_paths(composed.tree))
            raise ConfigError(f"{spec.where}: flag --{spec.name} sets missing config key '{spec.key}'{hint}") from None
        set_path(composed.tree, spec.key, value)
        composed.origins[spec.key] = f"flag --{spec.name}"


def merge_model_project(tree: dict, origins: Origins, project_dir: Path) -> None:
    """Load model.project/<model.config>.yaml as model.arch, under the project's own arch overrides."""
    model = tree.get("model")
    if not isinstance(model, dict) or not model.get("project"):
        return
    where = origins.get("model.project", "model.project")
    model_dir = model_project_dir(str(model["project"]), project_dir, where)
    # With a preset or target the shape comes from apply_model_shape; base.yaml gives the architecture.
    shaped_by = next((k for k in ("preset", "target_params") if model.get(k)), None)
    name = "base" if shaped_by else str(model.get("config") or "")
    if not name:
        raise ConfigError(f"{origins.get('model', 'model')}: model.config is empty; name a size such as 4M")
    path = model_dir / (name if name.endswith(".yaml") else name + ".yaml")
    if not path.is_file() and shaped_by:
        raise ConfigError(f"{origins.get(f'model.{shaped_by}', where)}: model.{shaped_by} needs the model "
                          f"project's base.yaml (its architecture settings), and {model_dir} has none")
    if not path.is_file():
        available = sorted(p.stem for p in model_dir.glob("*.yaml") if p.stem != "base")
        hint = suggest(name, available)
        raise ConfigError(f"{origins.get('model.config', where)}: no model config '{name}' in {model_dir}{hint}; "
                          f"available: {available}")
    arch, arch_origins = compose(path, [model_dir])
    if shaped_by:  # base.yaml's own shape (if any) yields to the preset/target; model.arch overrides still win
        for field in SHAPE_FIELDS:
            arch.pop(field, None)
    prefixed = {f"model.arch.{k}" if k else "model.arch": v for k, v in arch_origins.items()}
    overrides = model.get("arch") or {}
    override_origins = {k: v for k, v in origins.items() if k.startswith("model.arch.")}
    model["arch"] = {}
    deep_merge(model, origins, {"arch": arch}, prefixed, "model")
    deep_merge(model["arch"], origins, overrides, override_origins, "model.arch")


def apply_model_shape(tree: dict, origins: Origins) -> None:
    """model.preset or model.target_params: fill model.arch's shape fields, except those the config sets itself."""
    model = tree.get("model")
    if not isinstance(model, dict):
        return
    preset_name, target = model.get("preset"), model.get("target_params")
    if not preset_name and not target:
        return
    if preset_name and target:
        raise ConfigError(f"{origins.get('model.target_params', 'model')}: set model.preset or model.target_params, "
                          "not both")
    arch = model.setdefault("arch", {})
    explicit = {f for f in SHAPE_FIELDS if f in arch}  # set by the project's model.arch overrides
    try:
        if preset_name:
            shape, source = preset(str(preset_name), **_arch_choice(arch)), f"model.preset {preset_name}"
        else:
            count = parse_param_count(target)
            shape = shape_for_target_params(arch.get("architecture", "llama"), count, int(arch.get("vocab_size", 32000)),
                                            bool(model.get("prefer_depth")))
            source = f"model.target_params {target}" + (" (prefer_depth)" if model.get("prefer_depth") else "")
    except (ModelError, ValueError) as exc:
        key = "model.preset" if preset_name else "model.target_params"
        raise ConfigError(f"{origins.get(key, key)}: {key}: {exc}") from None
    for field in SHAPE_FIELDS:
        if field not in explicit:
            arch[field] = getattr(shape, field)
            origins[f"model.arch.{field}"] = source


def _arch_choice(arch: dict) -> dict:
    return {k: arch[k] for k in ("architecture", "vocab_size") if k in arch}


def _name_sources(tree: dict) -> None:
    """Give every data source a name (derived from its path where the config leaves it out)."""
    data = tree.get("data")
    if isinstance(data, dict):
        for key in ("sources", "validation"):
            if key in data:
                data[key] = named_sources(data[key])


def resolve(composed: ComposedConfig) -> tuple[dict[str, Any], Origins]:
    """Model project merged in, interpolation done: the final plain config and its origins."""
    tree, origins = composed.tree, composed.origins
    tree["project_dir"] = str(composed.project.dir)
    origins["project_dir"] = "project directory"
    model = tree.get("model")
    arch = model.get("arch") if isinstance(model, dict) else None
    explicit = set(arch) if isinstance(arch, dict) else set()  # the project's (and flags') own model.arch keys
    merge_model_project(tree, origins, composed.project.dir)
    env_forms: dict[str, Any] = {}
    tree = interpolate(tree, origins, env_forms)
    follow_data(tree, origins, explicit)  # before the shape: a target's size depends on the vocabulary
    apply_model_shape(tree, origins)  # after interpolation: a target's shape depends on the resolved vocab_size
    _name_sources(tree)
    tree["environment"] = env_forms
    origins["environment"] = "values taken from the environment (saved as ${env:...}, never as values)"
    return tree, origins
