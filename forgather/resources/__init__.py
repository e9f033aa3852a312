"""Files shipped inside the package: the templates (base.yaml) and the bundled model projects."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError

RESOURCES_DIR = Path(__file__).resolve().parent
# FORGATHER_TEMPLATES points `extends:` at another templates directory (a site's own base.yaml).
TEMPLATES_DIR = Path(os.environ.get("FORGATHER_TEMPLATES", RESOURCES_DIR / "templates"))
MODELS_DIR = RESOURCES_DIR / "models"


def model_project_names() -> list[str]:
    """Names of the bundled model projects (`model.project: llama`)."""
    return sorted(p.name for p in MODELS_DIR.iterdir() if p.is_dir() and any(p.glob("*.yaml")))


def is_model_name(value: str) -> bool:
    """True when `model.project` names a bundled model project rather than a path (no separator, not . or ..)."""
    return bool(value) and "/" not in value and os.sep not in value and value not in (".", "..") \
        and not value.startswith("~")


def model_project_dir(value: str, project_dir: Path, where: str) -> Path:
    """The model project directory for `model.project`: a bundled name, or a path relative to the project."""
    if is_model_name(value):
        bundled = MODELS_DIR / value
        if bundled.is_dir():
            return bundled
        names = model_project_names()
        local = project_dir / value
        hint = f"; for the directory {local} write ./{value}" if local.is_dir() else " (or a path such as ./my_model)"
        raise ConfigError(f"{where}: model.project '{value}' names no bundled model project; "
                          f"available: {', '.join(names)}{hint}")
    model_dir = (project_dir / Path(value).expanduser()).resolve()
    if not model_dir.is_dir():
        raise ConfigError(f"{where}: model project '{value}' is not a directory ({model_dir}); "
                          f"give a directory or a bundled name ({', '.join(model_project_names())})")
    return model_dir
