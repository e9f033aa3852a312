"""`forgather train`: resolve the project, write the run's config, and exec torchrun on it."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from ..agent import PREEMPTED
from ..checkpoint.layout import CONFIG_FILE, check_fresh_start, launch_config_path, start_over_done_by
from ..config import RunConfig, write_config
from ..errors import DataError, UserError, without_environment_values
from ..lifeline import STOP_SIGNALS, record_stop_signals
from ..launch import add_launch_arguments, execute, plan_launch
from ..preflight import launch_problems, preflight
from ..run_lock import probe
from .common import add_data_argument, add_project_flags, resolve_config

EXAMPLES = """examples:
  forgather train --init-model                 start fresh (refuses to replace checkpoints)
  forgather train                              resume from the latest checkpoint
  forgather train --dry-run -d 0,1             print the exact torchrun command for GPUs 0 and 1
  forgather train --nnodes 2 --rdzv-endpoint 10.0.0.1:29400 --rdzv-id job42
  forgather train -- --max-restarts 3          everything after -- goes to torchrun verbatim
"""


def register(subparsers: Any, composed: Any) -> None:
    parser = subparsers.add_parser(
        "train", help="train the project under torchrun", epilog=EXAMPLES,
        description="Resolve the project's config, write it to the run directory, and run torchrun on it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_launch_arguments(parser)
    add_data_argument(parser)
    add_project_flags(parser, composed)
    parser.set_defaults(handler=run)


def apply_launcher_overrides(config: RunConfig, args: argparse.Namespace, origins: dict[str, str]) -> None:
    """Launcher flags that also change what the ranks do (recorded as flags: they apply on resume too)."""
    if args.no_accelerator:
        config.dist.accelerator = False
        origins["dist.accelerator"] = "flag --no-accelerator"
    if args.dist_backend:
        config.dist.backend = args.dist_backend
        origins["dist.backend"] = "flag --dist-backend"


def resumed_config(config: RunConfig, origins: dict[str, str]) -> RunConfig:
    """On resume, the run's saved config with this launch's flags applied (resume_config.py); else `config`."""
    from ..checkpoint.layout import list_checkpoints
    from ..resume_config import reconcile, saved_config

    if config.train.init_model or not list_checkpoints(config.run_dir / "checkpoints"):
        return config
    saved = saved_config(config.run_dir)
    if saved is None:
        return config
    reconciled = reconcile(config, origins, saved)
    for line in reconciled.report():
        print(line, file=sys.stderr)
    return reconciled.config


def check_data_layout(config: RunConfig, args: argparse.Namespace, nproc_per_node: int) -> None:
    """Refuse, before torchrun starts, a world size that cannot split data.shards, or a resume whose latest
    checkpoint read another shard layout (the ranks check again, authoritatively)."""
    import json

    from ..checkpoint.layout import DATA_STATE_FILE, list_checkpoints
    from ..data.shards import check_world_size

    shards = config.data["shards"]
    if config.dist.mode != "dispatch" and str(args.nnodes).isdigit():
        check_world_size(shards, int(args.nnodes) * nproc_per_node)
    if config.train.init_model or not config.checkpoint.restore_dataset_state:
        return
    found = list_checkpoints(config.run_dir / "checkpoints")
    try:
        saved = json.loads((found[-1][1] / DATA_STATE_FILE).read_text()) if found else {}
    except (OSError, ValueError):
        return  # unreadable: the ranks verify checkpoints and say which file is damaged
    if isinstance(saved, dict) and saved.get("format") == 2 and saved.get("shards") != shards:
        raise DataError(f"data.shards is {shards} but {found[-1][1]} was saved with {saved.get('shards')} shards (another "
                        "shard layout is another stream); restore data.shards, or resume with "
                        "--no-restore-dataset-state")


def check_step_budget(config: RunConfig) -> None:
    """Refuse, before torchrun starts, a resume whose train.max_steps is behind its newest checkpoint (the ranks
    check again against the checkpoint they verify and load)."""
    from ..checkpoint.layout import list_checkpoints
    from ..resume_config import budget_behind_the_run

    found = [] if config.train.init_model else list_checkpoints(config.run_dir / "checkpoints")
    if found and not config.train.max_tokens and config.train.max_steps is not None and \
            found[-1][0] > config.train.max_steps:
        raise budget_behind_the_run(found[-1][0], config.train.max_steps)


def after_requeue(config: RunConfig, environ: dict[str, str]) -> None:
    """A requeued SLURM job (SLURM_RESTART_COUNT > 0) starts again with its first start's flags: its --init-model
    applies until that job's start-over has replaced the previous run (start_over_done_by); then it resumes."""
    requeues = int(environ.get("SLURM_RESTART_COUNT", "0") or 0)
    if requeues and config.train.init_model and start_over_done_by(config.run_dir, environ.get("SLURM_JOB_ID")):
        config.train.init_model = config.train.overwrite = False
        print(f"forgather: SLURM requeue {requeues}: this job's --init-model already started the run; resuming from "
              "its latest checkpoint", file=sys.stderr)


def run(args: argparse.Namespace, composed: Any) -> int:
    """Launch the run (this process becomes torchrun); an in-process caller that gets an answer instead (a dry run,
    a refusal, a stop before the start) gets its own signal handlers and mask back."""
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    try:
        # Held for one safe point (before torchrun starts) rather than killing the launcher part-way.
        return launch(args, composed, [] if args.dry_run else record_stop_signals([]))
    finally:
        # A stop signal left pending by launch()'s block before the exec was meant for this launch, which has
        # ended: take it before unblocking, or the caller's handler (the default one: death by signal) would act.
        while signal.sigtimedwait(STOP_SIGNALS, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, handler in handlers.items():
            if handler is not None:  # None: set outside Python, cannot be put back from here
                signal.signal(sig, handler)


def launch(args: argparse.Namespace, composed: Any, stop_requests: list[int]) -> int:
    """Resolve, check and write this launch's config, then exec torchrun; `stop_requests` fills from a signal."""
    config, origins = resolve_config(composed, args)
    apply_launcher_overrides(config, args, origins)
    after_requeue(config, dict(os.environ))
    config_path = config.run_dir / CONFIG_FILE
    existing_run = config_path.is_file()
    # The ranks read a file of this launch's own; rank 0 makes it the run's config.yaml once the run is under way.
    # (A dry run of a new run writes config.yaml itself, so that the command it prints can be run as it is.)
    fresh_dry_run = args.dry_run and not existing_run
    launch_path = config_path if fresh_dry_run else launch_config_path(config.run_dir)
    plan = plan_launch(args, launch_path)
    preflight(args, config.run_dir)
    probe(config.run_dir)  # another job writes here: stop before touching its config
    config = resumed_config(config, origins)
    problems = launch_problems(config, args, origins, os.environ)
    if problems and not args.dry_run:
        raise UserError(problems[0])  # before torchrun and before any data is prepared
    check_data_layout(config, args, plan.nproc_per_node)
    if not args.dry_run:
        check_step_budget(config)
    try:  # refused before this launch's settings are written over the run's config.yaml
        check_fresh_start(config.run_dir / "checkpoints", config.train.init_model, config.train.overwrite)
    except UserError as exc:
        if not args.dry_run:
            raise
        problems.append(str(exc))
    if args.dry_run:
        for problem in problems:  # the command may be meant for another machine: say, don't refuse
            print(f"# warning: {without_environment_values(problem)}")
        # A dry run runs nothing and changes nothing: an existing run's config.yaml stays as it is.
        if existing_run:
            print(f"# dry run: the run's {config_path} is left as it is; the command reads {launch_path}, which "
                  "only `forgather train` without --dry-run writes (with this launch's settings)")
        else:
            write_config(config, launch_path)
            print(f"# resolved config written to {launch_path}")
        for key, value in plan.env.items():
            print(f"# env: {key}={value!r}")
        print(plan.shell())
        return 0
    write_config(config, launch_path)
    # From here a stop signal stays pending across the exec, and the agent takes it once it can pass it on
    # (agent.py unblocks); one that came while this launcher worked stops the launch before anything starts.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    if stop_requests:
        launch_path.unlink(missing_ok=True)
        print(f"forgather: stopped by {signal.Signals(stop_requests[0]).name} before the run started; nothing "
              f"changed; `forgather train` starts it (exit status {PREEMPTED})", file=sys.stderr, flush=True)
        return PREEMPTED
    print(f"forgather: {plan.shell()}", file=sys.stderr)
    return execute(plan)
