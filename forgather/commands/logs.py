"""`forgather logs summary`: final and best loss, tokens and throughput from a run's metrics.jsonl."""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

from ..errors import UserError
from .common import add_project_flags, load_composed, refuse_unused_overrides, resolve_config

METRICS_FILE = "metrics.jsonl"  # written by train/metrics.py's MetricsSink under RUN_DIR/runs


def register(subparsers: Any, composed: Any) -> None:
    parser = subparsers.add_parser(
        "logs", help="summarise a run's logs",
        description="Summarise a run's metrics (RUN_DIR/runs/metrics.jsonl, exact values). "
                    "Example: forgather logs summary output/ --json",
    )
    actions = parser.add_subparsers(dest="logs_action", metavar="ACTION", required=True)
    summary = actions.add_parser("summary", help="final/best loss, tokens, tokens/s",
                                 description="Final and best loss, tokens and throughput of one run. PATH is a run "
                                             "directory, its runs/ directory or a metrics.jsonl file (default: the "
                                             "project's run_dir).")
    summary.add_argument("path", nargs="?", type=Path, metavar="PATH", help="run dir, runs/ dir or metrics.jsonl")
    summary.add_argument("--json", action="store_true", help="print JSON with exact values instead of rounded text")
    add_project_flags(summary, composed)
    summary.set_defaults(handler=run)


def metrics_file(path: Path) -> Path:
    """The metrics.jsonl PATH means: itself, PATH/metrics.jsonl or PATH/runs/metrics.jsonl."""
    if not path.exists():
        raise UserError(f"{path}: no such file or directory; pass a run directory (with runs/{METRICS_FILE})")
    for candidate in (path, path / METRICS_FILE, path / "runs" / METRICS_FILE):
        if candidate.is_file():
            return candidate
    raise UserError(f"{path}: no {METRICS_FILE} here or under runs/; pass a run directory of `forgather train` "
                    "(metrics are written from the first log step on)")


def read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in a metrics.jsonl, as sorted (step, value), later writes of a step winning."""
    series: dict[str, dict[int, float]] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = int(record.pop("step"))
        except (ValueError, KeyError, TypeError, AttributeError):
            if number == len(lines):  # a run killed while writing leaves its last line unfinished
                continue
            raise UserError(f"{path}:{number}: not a metrics record (a JSON object with a step); "
                            "is this a forgather metrics file?") from None
        for key, value in record.items():
            if isinstance(value, (int, float)):
                series.setdefault(key, {})[step] = float(value)  # a resumed run re-logs repeated steps
    return {key: sorted(by_step.items()) for key, by_step in series.items()}


def summarise(series: dict[str, list[tuple[int, float]]], source: Path) -> dict[str, Any]:
    """The figures a user checks first after a run."""
    if "loss" not in series:
        raise UserError(f"{source}: holds no 'loss' yet; it is written every train.log_every steps and at the "
                        "last step")
    loss = series["loss"]
    finite = [v for _, v in loss if math.isfinite(v)]
    out: dict[str, Any] = {"steps": loss[-1][0], "final_loss": loss[-1][1],
                           "best_loss": min(finite) if finite else loss[-1][1]}
    if "tokens" in series:
        out["tokens"] = int(series["tokens"][-1][1])
    if "tps" in series:
        out["tokens_per_s_median"] = statistics.median(v for _, v in series["tps"])
    if "mfu(%)" in series:
        out["mfu_pct_median"] = statistics.median(v for _, v in series["mfu(%)"])
    if "eval/loss" in series:
        evals = series["eval/loss"]
        best_step, best = min(evals, key=lambda sv: sv[1])
        out.update(final_eval_loss=evals[-1][1], best_eval_loss=best, best_eval_step=best_step)
    return out


def rounded(value: Any) -> str:
    """A figure for reading: integers exact with separators, floats to 4 significant digits."""
    if isinstance(value, float) and math.isfinite(value):
        text = f"{value:.4g}"
        # .4g switches to exponent notation from 1e4 on; throughput reads better as a plain integer.
        return f"{value:,.0f}" if abs(value) >= 1e4 else text
    return f"{value:,}" if isinstance(value, int) else str(value)


def run(args: argparse.Namespace, composed: Any) -> int:
    path = args.path
    if path is None:
        config, _ = resolve_config(composed or load_composed(args), args)
        path = config.run_dir
        if not path.is_dir():
            raise UserError(f"{path}: no metrics yet (run `forgather train` first, or pass PATH)")
    else:
        refuse_unused_overrides(args, composed, str(path))
    source = metrics_file(Path(path))
    summary = summarise(read_metrics(source), source)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key:<22} {rounded(value)}")
    return 0
