"""`forgather checkpoint list|show|verify`: inspect a run's checkpoints without importing torch."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from ..checkpoint import layout
from ..checkpoint.manifest import checkpoint_size, read_manifest, verify_manifest
from ..errors import CheckpointError, UserError
from .common import add_project_flags, checked_number, load_composed, refuse_unused_overrides, resolve_config

EXAMPLES = """examples:
  forgather checkpoint list                          the project's checkpoints, newest last
  forgather checkpoint show 200                      manifest and trainer state of step-000200
  forgather checkpoint verify output/checkpoints     exit 1 if any checkpoint fails its sha256 check
  forgather checkpoint export 200 --output hf/run1   an HF model dir (transformers, generate) of step-000200
"""


def register(subparsers: Any, composed: Any) -> None:
    parser = subparsers.add_parser(
        "checkpoint", help="list, show or verify checkpoints", epilog=EXAMPLES,
        description="Inspect checkpoints: PATH is a checkpoints directory, a run directory or one step-NNNNNN "
                    "directory (default: the project's run_dir/checkpoints).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="checkpoint_action", metavar="ACTION", required=True)
    for name, help_text in (("list", "one line per checkpoint: step, loss, tokens, size, verified"),
                            ("verify", "check every file's size and sha256; exit 1 naming the first bad file")):
        action = actions.add_parser(name, help=help_text, description=help_text)
        action.add_argument("path", nargs="?", metavar="PATH", help="checkpoints dir, run dir or step dir")
        add_project_flags(action, composed)
        action.set_defaults(handler=run)
    show = actions.add_parser("show", help="manifest and trainer-state summary of one checkpoint",
                              description="Show one checkpoint, by step number (in the project's run) or path.")
    show.add_argument("target", metavar="STEP|PATH", help="a step number such as 200, or a step directory")
    add_project_flags(show, composed)
    show.set_defaults(handler=run)
    export = actions.add_parser(
        "export", help="write an HF model dir of one checkpoint (also of an FSDP2 run's per-rank shards)",
        description="Verify one checkpoint and write an HF model directory: config.json with the tokenizer's "
                    "bos/eos/pad ids, generation_config.json, safetensors (sharded with an index above "
                    "--max-shard-size) and the tokenizer files. Stock transformers loads it.")
    export.add_argument("target", metavar="STEP|PATH", help="a step number such as 200, or a step directory")
    export.add_argument("--output", required=True, metavar="DIR", help="the HF model directory to write")
    export.add_argument("--force", action="store_true", help="replace DIR if it exists")
    export.add_argument("--max-shard-size", type=checked_number(float, lambda v: 0 < v < 2**20, "must be more than "
                                                                "0 and at most 1048576 GiB"), default=5.0, metavar="GiB",
                        help="weights above this size go into several files with an index (default 5)")
    add_project_flags(export, composed)
    export.set_defaults(handler=run)


def project_root(args: argparse.Namespace, composed: Any) -> Path:
    """run_dir/checkpoints of the project named by -p/-c (or the cwd)."""
    if composed is None:  # the CLI only composes for commands that always need a project
        composed = load_composed(args)
    config, _ = resolve_config(composed, args)
    return config.run_dir / "checkpoints"


def checkpoint_dirs(path: Path) -> list[Path]:
    """The step dirs PATH means: itself if it is one, else those under PATH or PATH/checkpoints."""
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such directory")
    if layout.parse_step(path.name) is not None or (path / layout.MANIFEST_FILE).is_file():
        return [path]
    root = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    return [p for _, p in layout.list_checkpoints(root)]


def human_size(size: int) -> str:
    """Bytes as B/KiB/MiB/GiB with 3 significant figures."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1024
    return f"{value:.3g} TiB"  # pragma: no cover


def trainer_state(path: Path) -> dict:
    """trainer_state.json, or {} when unreadable (verification reports why)."""
    try:
        state = json.loads((path / layout.TRAINER_STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _verify(path: Path) -> tuple[dict | None, str]:
    try:
        return verify_manifest(path), "ok"
    except CheckpointError as exc:
        return None, f"FAILED: {exc}"


def run_list(dirs: list[Path]) -> int:
    rows = [("step", "loss", "eval_loss", "tokens", "size", "verified")]
    for path in dirs:
        manifest, status = _verify(path)
        state = trainer_state(path)
        size = human_size(checkpoint_size(manifest)) if manifest else "-"
        rows.append((path.name, _fmt(state.get("loss")), _fmt(state.get("eval_loss")), _fmt(state.get("tokens")),
                     size, status))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[5])
    return 0


def run_verify(dirs: list[Path]) -> int:
    failed = 0
    for path in dirs:
        _, status = _verify(path)
        failed += status != "ok"
        print(f"{path.name}: {status}", file=sys.stdout if status == "ok" else sys.stderr)
    return 1 if failed else 0


def run_show(path: Path) -> int:
    manifest, status = _verify(path)
    try:
        shown = manifest or read_manifest(path)
    except CheckpointError:
        shown = {"files": []}
    print(f"checkpoint {path}\nverified   {status}")
    for key in ("step", "created", "world_size", "optimizer_format", "format_version"):
        if key in shown:
            print(f"{key:<10} {shown[key]}")
    print(f"files      {len(shown['files'])}, {human_size(checkpoint_size(shown))}")
    for entry in shown["files"]:
        print(f"  {human_size(int(entry.get('size', 0))):>10}  {str(entry.get('sha256', ''))[:12]}  {entry.get('path')}")
    print("trainer_state")
    for key, value in sorted(trainer_state(path).items()):
        summary = f"{{...}} ({len(value)} keys)" if isinstance(value, dict) else _fmt(value)
        print(f"  {key}: {summary}")
    return 0 if manifest else 1


def run_export(path: Path, args: argparse.Namespace) -> int:
    from ..checkpoint.export import export_checkpoint

    out = export_checkpoint(path, Path(args.output), force=args.force, verify=True,
                            max_shard_bytes=int(args.max_shard_size * 2**30))
    files = sorted(p.name for p in out.iterdir())
    print(f"exported {path.name} to {out}: {', '.join(files)}")
    return 0


def checkpoint_target(target: str, project_checkpoints: Callable[[], Path]) -> Path:
    """A step directory's path, or a step of the project's run as a number (200) or as `list` prints it
    (step-000200); CheckpointError naming the steps there are when it is none of them. A number is always a
    step (a directory named 200 is ./200), so what it means never depends on the current directory."""
    if not target.isdigit() and Path(target).is_dir():
        path = Path(target)
        if layout.parse_step(path.name) is not None or (path / layout.MANIFEST_FILE).is_file():
            return path
        found = checkpoint_dirs(path)  # a run dir or its checkpoints/ means its newest (it was shown as FAILED)
        if not found:
            raise CheckpointError(f"{target}: holds no checkpoint; give a step directory, or a run directory that "
                                  "has checkpoints")
        return found[-1]
    step = int(target) if target.isdigit() else layout.parse_step(target)
    if step is None:
        raise CheckpointError(f"{target}: no such checkpoint (give a step number, a step-NNNNNN name or a path)")
    root = project_checkpoints()
    path = layout.step_dir(root, step)
    if path.is_dir():
        return path
    found = [name.name for _, name in layout.list_checkpoints(root)]
    where = f"checkpoints in {root}: {', '.join(found)}" if found else f"no checkpoints in {root}"
    raise CheckpointError(f"{target}: no such checkpoint ({where})")


def run(args: argparse.Namespace, composed: Any) -> int:
    action = args.checkpoint_action
    if action in ("show", "export"):
        read_project = []  # a step number reads the project's config; a path does not

        def checkpoints_of_the_project() -> Path:
            read_project.append(True)
            return project_root(args, composed)

        path = checkpoint_target(args.target, checkpoints_of_the_project)
        if not read_project:
            refuse_unused_overrides(args, composed, args.target)
        return run_show(path) if action == "show" else run_export(path, args)
    if args.path:
        refuse_unused_overrides(args, composed, args.path)
    where = Path(args.path) if args.path else project_root(args, composed)
    if not args.path and not where.is_dir():
        raise UserError(f"{where}: no checkpoints yet (run `forgather train` first, or pass PATH)")
    dirs = checkpoint_dirs(where)
    if not dirs:
        print(f"no checkpoints under {where}", file=sys.stderr)
        return 1
    return run_list(dirs) if action == "list" else run_verify(dirs)
