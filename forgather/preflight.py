"""Checks `forgather train` makes before torchrun starts, so a mistake is one line and not a rank traceback
or a hang: the run dir is writable, a static rendezvous port is free, a c10d endpoint is a torch store; the
GPUs asked for exist, one per rank, and the attention backend can train on the device the ranks will get.

torch-free unless a program already listens on a c10d endpoint (GPU facts come from NVML and the environment).
`launch_problems` returns its findings so that `--dry-run` can print them as warnings.
"""

from __future__ import annotations

import argparse
import datetime
import errno
import socket
import tempfile
import threading
from pathlib import Path
from typing import Mapping

from .config import RunConfig
from .devices import Gpu, devices_problem, nvml_gpus, visible_gpu_count
from .errors import UserError
from .launch import parse_devices
from .models.attention_plan import training_problem
from .train.precision import plan_precision
from .yamlio import Origins

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
STORE_PROBE_SECONDS = 5.0


def check_writable(run_dir: Path) -> None:
    """UserError when the run dir cannot be created or written (read-only disk, permissions)."""
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise UserError(f"output_dir {run_dir} is not writable ({exc.strerror or exc}); point --output-dir at a "
                        "directory you can write to") from None


# Keys every run config has: a config.yaml without them in the run dir is someone else's file, that a run would replace.
RUN_CONFIG_KEYS = ("output_dir", "model", "data", "train", "checkpoint")


def check_run_dir_is_a_run(run_dir: Path) -> None:
    """UserError when RUN_DIR/config.yaml exists but is not a forgather run's config (a run makes it its own)."""
    from .checkpoint.layout import CONFIG_FILE
    from .yamlio import parse_yaml

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return
    try:
        tree = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    except (UserError, OSError, UnicodeDecodeError):
        tree = None
    if not isinstance(tree, dict) or not all(key in tree for key in RUN_CONFIG_KEYS):
        raise UserError(f"{path} is not the config of a forgather run, and a run there would replace it; point "
                        "--output-dir at a new directory or at a forgather run's")


def _is_local(host: str) -> bool:
    if host in LOCAL_HOSTS or host == socket.gethostname():
        return True
    try:
        return socket.gethostbyname(host) in {"127.0.0.1", _own_address()}
    except OSError:
        return False


def _own_address() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return ""


def check_master_port(host: str, port: int) -> None:
    """With static rendezvous, node 0 serves the store on host:port: it must be free there."""
    if not _is_local(host):
        return
    with socket.socket() as probe:
        try:
            probe.bind(("", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"--master-port {port} is in use on this machine; pick a free port (or let "
                                "forgather choose: leave out --master-addr/--master-port on one node)") from None
            raise


def check_rendezvous_endpoint(endpoint: str) -> None:
    """A c10d endpoint that accepts connections must answer like a torch store; another program on that port
    would hang the rendezvous for minutes. Refused connections are fine: the first agent will host the store."""
    host, _, port_text = endpoint.rpartition(":")
    if not port_text.isdigit():
        return
    try:
        with socket.create_connection((host, int(port_text)), timeout=STORE_PROBE_SECONDS):
            pass
    except OSError:
        return  # nothing listens yet (or unreachable: torchrun reports that itself)
    from torch.distributed import TCPStore  # only when a program listens there: the dry run stays torch-free

    answered: list[bool] = []

    def handshake() -> None:
        try:
            store = TCPStore(host, int(port_text), is_master=False, wait_for_workers=False,
                             timeout=datetime.timedelta(seconds=STORE_PROBE_SECONDS))
            store.check(["forgather-preflight"])  # a round trip: only a store answers it
            answered.append(True)
        except Exception:  # noqa: BLE001 - any failure to speak the store protocol means the same thing
            pass

    # A program that accepts but never answers would block the store client indefinitely: give it a deadline.
    probe = threading.Thread(target=handshake, daemon=True)
    probe.start()
    probe.join(2 * STORE_PROBE_SECONDS)
    if not answered:
        raise UserError(f"--rdzv-endpoint {endpoint}: another program listens on that port and it is not a torch "
                        "rendezvous store; pick a free port")


def preflight(args: argparse.Namespace, run_dir: Path) -> None:
    """Every check that can run before torchrun, for `forgather train`'s parsed launcher flags."""
    check_writable(run_dir)
    check_run_dir_is_a_run(run_dir)
    if args.dry_run:
        return
    if args.master_port is not None and (args.node_rank in (None, 0)):
        check_master_port(args.master_addr or "127.0.0.1", args.master_port)
    if args.rdzv_endpoint:
        check_rendezvous_endpoint(args.rdzv_endpoint)


def launch_problems(config: RunConfig, args: argparse.Namespace, origins: Origins, environ: Mapping[str, str],
                    gpus: list[Gpu] | None = None) -> list[str]:
    """Everything that would make the ranks fail (or silently run elsewhere than asked), as one line each."""
    gpus = nvml_gpus() if gpus is None else gpus
    problems = []
    use_gpus = config.dist.accelerator and not args.no_accelerator
    if args.devices and not use_gpus:  # CUDA_VISIBLE_DEVICES would be set, and the ranks would run on CPU anyway
        why = "--no-accelerator" if args.no_accelerator else "dist.accelerator: false"
        problems.append(f"-d {args.devices} with {why}: the ranks would run on CPU; drop -d, or drop {why} to "
                        "train on those GPUs")
    if use_gpus and args.devices:
        devices = parse_devices(args.devices)
        problem = devices_problem(devices, gpus, args.devices)
        if problem:
            problems.append(problem)
        visible = len(devices)
    else:
        visible = visible_gpu_count(dict(environ), gpus) if use_gpus else 0
    nproc = args.nproc_per_node
    if visible and nproc and nproc > visible:
        problems.append(f"--nproc-per-node {nproc} with {visible} visible GPU(s): each rank needs a GPU of its own; "
                        f"use at most {visible} processes, more GPUs with -d, or --no-accelerator for CPU processes")
    device_type = "cuda" if visible else "cpu"
    precision = plan_precision(config.train.precision, device_type)
    attention = config.model.attn_implementation
    problem = training_problem(attention, device_type, precision.compute)
    if problem:
        where = origins.get("model.attn_implementation", "model.attn_implementation")
        problems.append(f"{where}: model.attn_implementation={attention}: {problem}")
    low, _, high = str(args.nnodes).partition(":")
    if config.train.init_model and high and low != high:
        # torchrun restarts every worker when a node joins, and does not count it as a restart: each joining node
        # would run the start-over again and delete the checkpoints the run has saved since.
        problems.append(f"--init-model with an elastic --nnodes {args.nnodes}: a node joining later would start the "
                        f"run over again; start it on a fixed number of nodes (--nnodes {high}), then resume with "
                        f"--nnodes {args.nnodes}")
    return problems + init_from_problems(config) + data_source_problems(config)


def init_from_problems(config: RunConfig) -> list[str]:
    """train.init_from weights that would not fit the model (a rank found that out only after torchrun started)."""
    if not config.train.init_from:
        return []
    from .models.hf_config import init_from_problem
    from .models.spec import ModelSpec

    try:
        problem = init_from_problem(ModelSpec.from_dict(config.model.arch, source="model.arch"),
                                    config.path(config.train.init_from))
    except UserError as exc:
        problem = str(exc)
    return [problem] if problem else []


def data_source_problems(config: RunConfig) -> list[str]:
    """Local sources that do not exist, hold no files of their format or mix formats, one line each: the ranks
    would fail on them only after torchrun started (URLs and hub ids are checked where they are read)."""
    from .data.source_files import resolve_files
    from .data.spec import DataSpec

    spec = DataSpec.from_dict(config.data, base_dir=config.project_dir)
    problems = []
    for source in [*spec.sources, *spec.validation]:
        try:
            located = source.located()
            kind = located.resolved_kind()
            if kind in ("parquet", "jsonl", "text") and "://" not in located.path:
                files = resolve_files(located, kind)
                if kind == "parquet":  # pyarrow only for a parquet source: dry runs of others stay light
                    from .data.parquet_source import check_first_footer

                    check_first_footer(located, files)
        except UserError as exc:
            problems.append(str(exc))
    return problems
