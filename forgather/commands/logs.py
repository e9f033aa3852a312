"""`forgather logs summary`: final and best loss, tokens and throughput from a run's TensorBoard events."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from ..errors import UserError
from .common import add_project_flags, load_composed, resolve_config


def register(subparsers: Any, composed: Any) -> None:
    parser = subparsers.add_parser(
        "logs", help="summarise a run's logs",
        description="Summarise TensorBoard logs. Example: forgather logs summary --json",
    )
    actions = parser.add_subparsers(dest="logs_action", metavar="ACTION", required=True)
    summary = actions.add_parser("summary", help="final/best loss, tokens, tokens/s")
    summary.add_argument("logdir", nargs="?", type=Path, help="a runs/ directory (default: the project's RUN_DIR/runs)")
    summary.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_project_flags(summary, composed)
    summary.set_defaults(handler=run)


def read_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in the event files under `logdir`, as (step, value), later writes winning."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    events.Reload()
    series = {}
    for tag in events.Tags().get("scalars", []):
        by_step = {e.step: e.value for e in events.Scalars(tag)}  # a resumed run re-logs repeated steps
        series[tag] = sorted(by_step.items())
    return series


def summarise(series: dict[str, list[tuple[int, float]]]) -> dict[str, Any]:
    """The figures a user checks first after a run."""
    if "loss" not in series:
        raise UserError("the logs hold no 'loss' scalar; is this a forgather run directory?")
    loss = series["loss"]
    out: dict[str, Any] = {"steps": loss[-1][0], "final_loss": loss[-1][1], "best_loss": min(v for _, v in loss)}
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


def run(args: argparse.Namespace, composed: Any) -> int:
    logdir = args.logdir
    if logdir is None:
        config, _ = resolve_config(composed or load_composed(args), args)
        logdir = config.run_dir / "runs"
    if not Path(logdir).is_dir():
        raise UserError(f"{logdir}: not a directory of TensorBoard logs")
    summary = summarise(read_scalars(Path(logdir)))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key:<22} {value:,.4f}" if isinstance(value, float) else f"{key:<22} {value:,}")
    return 0
