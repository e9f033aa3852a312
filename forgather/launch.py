"""Turn launcher flags into the exact torchrun command and environment; print or exec it."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .devices import visible_gpu_count
from .errors import UserError

ENTRY_MODULE = "forgather.run"


@dataclass
class LaunchPlan:
    """The torchrun invocation: environment changes plus argv."""

    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    nproc_per_node: int = 1

    def shell(self) -> str:
        """One pasteable shell line that runs the same job."""
        assignments = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
        return " ".join([*assignments, shlex.join(self.argv)])


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """The launcher's own flags (independent of any project)."""
    group = parser.add_argument_group("launcher (torchrun)")
    group.add_argument("-d", "--devices", help="GPUs to use, e.g. 0,1 (sets CUDA_VISIBLE_DEVICES)")
    group.add_argument("--nproc-per-node", type=int, help="processes per node (default: visible GPUs, else 1)")
    group.add_argument("--nnodes", default="1", help="number of nodes, or MIN:MAX for elastic jobs")
    group.add_argument("--node-rank", type=int, help="this node's rank with --master-addr (static rendezvous)")
    group.add_argument("--rdzv-endpoint", help="HOST:PORT of the c10d rendezvous (use an IP address)")
    group.add_argument("--rdzv-id", help="job id shared by all nodes of a c10d rendezvous")
    group.add_argument("--master-addr", help="rank-0 node address for static rendezvous")
    group.add_argument("--master-port", type=int, help="rank-0 node port for static rendezvous")
    group.add_argument("--no-accelerator", action="store_true", help="run on CPU even where GPUs exist")
    group.add_argument("--dist-backend", choices=["nccl", "gloo"], help="torch.distributed backend")
    group.add_argument("--dry-run", action="store_true", help="print the environment and torchrun command, run nothing")


def parse_devices(text: str) -> list[str]:
    """'0,1' → ['0', '1']; anything but distinct non-negative integers is an error."""
    parts = [p.strip() for p in text.split(",")]
    if not parts or not all(re.fullmatch(r"\d+", p) for p in parts) or len(set(parts)) != len(parts):
        raise UserError(f"-d/--devices '{text}': expected distinct GPU indices separated by commas, e.g. 0,1")
    return parts


def max_restarts(torchrun_args: list[str]) -> int:
    """The --max-restarts (or --max_restarts) value among arguments passed through to torchrun, else 0."""
    for i, arg in enumerate(torchrun_args):
        name, eq, value = arg.partition("=")
        if name in ("--max-restarts", "--max_restarts"):
            value = value if eq else (torchrun_args[i + 1] if i + 1 < len(torchrun_args) else "0")
            return int(value) if value.isdigit() else 0
    return 0


def torchrun_prefix() -> list[str]:
    """torchrun, run by forgather.agent: torchrun's own parser and agent, with the failing rank's exit status
    and message, and signals passed to the ranks (see agent.py). It takes exactly torchrun's arguments."""
    return [sys.executable, "-m", "forgather.agent"]


def _is_port(text: str) -> bool:
    return text.isdigit() and 1 <= int(text) <= 65535


def check_nodes(args: argparse.Namespace) -> None:
    """--nnodes N or MIN:MAX, --node-rank within it, --master-port a port: one line before torchrun otherwise
    (torchrun would fail on each node separately, or wait for a node that can never join)."""
    low, colon, high = str(args.nnodes).partition(":")
    if not (low.isdigit() and int(low) >= 1 and (not colon or (high.isdigit() and int(high) >= int(low)))):
        raise UserError(f"--nnodes '{args.nnodes}': expected a number of nodes (2) or MIN:MAX (1:4)")
    if args.node_rank is not None and not (0 <= args.node_rank < int(high if colon else low)):
        raise UserError(f"--node-rank {args.node_rank}: must be from 0 to {int(high if colon else low) - 1} with "
                        f"--nnodes {args.nnodes}")
    if args.master_port is not None and not _is_port(str(args.master_port)):
        raise UserError(f"--master-port {args.master_port}: expected a port from 1 to 65535")


def plan_launch(args: argparse.Namespace, config_path: Path, environ: dict[str, str] | None = None,
                entry: str = ENTRY_MODULE) -> LaunchPlan:
    """Build the torchrun argv and env changes for the parsed launcher flags (each rank runs `entry CONFIG`)."""
    environ = dict(os.environ if environ is None else environ)
    plan = LaunchPlan()
    if args.no_accelerator:
        plan.env["CUDA_VISIBLE_DEVICES"] = ""
    elif args.devices:
        plan.env["CUDA_VISIBLE_DEVICES"] = ",".join(parse_devices(args.devices))
    environ.update(plan.env)
    nproc = args.nproc_per_node
    if nproc is None:
        nproc = max(1, visible_gpu_count(environ)) if not args.no_accelerator else 1
    if nproc < 1:
        raise UserError(f"--nproc-per-node {nproc}: must be at least 1")

    check_nodes(args)
    argv = [*torchrun_prefix(), "--nnodes", str(args.nnodes), "--nproc-per-node", str(nproc)]
    if args.rdzv_endpoint:
        host, _, port = args.rdzv_endpoint.rpartition(":")
        if not host or not _is_port(port):
            raise UserError(f"--rdzv-endpoint '{args.rdzv_endpoint}': expected HOST:PORT with a port from 1 to 65535, "
                            "e.g. 10.0.0.1:29400")
        argv += ["--rdzv-backend", "c10d", "--rdzv-endpoint", args.rdzv_endpoint]
        argv += ["--rdzv-id", args.rdzv_id or "forgather"]
    elif args.master_addr or args.master_port:
        argv += ["--master-addr", args.master_addr or "127.0.0.1", "--master-port", str(args.master_port or 29500)]
    elif str(args.nnodes) == "1":
        argv.append("--standalone")  # picks a free local port, so concurrent jobs on one host don't collide
    else:
        raise UserError(f"--nnodes {args.nnodes}: multi-node jobs need --rdzv-endpoint HOST:PORT or --master-addr")
    if args.node_rank is not None:
        argv += ["--node-rank", str(args.node_rank)]
    argv += list(args.torchrun_args or [])
    argv += ["-m", entry, str(config_path)]
    if max_restarts(args.torchrun_args or []) > 0 and "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" not in environ:
        # Restarted workers must not share the agent's store: it still holds the killed attempt's gloo/nccl
        # addresses under the same keys, and the new ranks then connect to dead peers (refused or hung).
        # Unshared, each attempt gets a fresh store on a fresh port.
        plan.env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
    plan.argv = argv
    plan.nproc_per_node = nproc
    return plan


def execute(plan: LaunchPlan) -> int:
    """Replace this process with torchrun, so its exit status is ours and signals reach it directly."""
    sys.stdout.flush()
    sys.stderr.flush()
    env = {**os.environ, **plan.env}
    try:
        os.execvpe(plan.argv[0], plan.argv, env)
    except OSError as exc:
        raise UserError(f"cannot start torchrun ({plan.argv[0]}): {exc}; is torch installed?") from None
    return 0  # unreachable: exec never returns on success
