"""torchrun, run in-process so its outcome is ours: `python -m forgather.agent TORCHRUN_ARGS...`.

`forgather train` execs this instead of the torchrun script. It parses the arguments with torchrun's own
parser and runs torchrun's own `run()` (the elastic agent; nothing home-made), and adds three things:

- Exit status: when ranks fail, the exit code is the failing rank's own (2 for a config or data error,
  3 for divergence...), not torchrun's 1, and the rank's one-line error is printed once, last, after any
  noise from the other ranks (ranks that fail alike print it once in all); torchrun's ChildFailedError
  report is not printed.
- Signals: SIGTERM/SIGINT go to the ranks, which finish their step, save a checkpoint and exit; the
  agent never kills them after a grace period (torchrun's agent would, after 30 s), so a slow save
  completes. A job stopped this way exits PREEMPTED (75): resumable, e.g. for a scheduler to requeue; so does
  one whose ranks alone got the signal (they leave word in the status dir).
The ranks stop by themselves if this process dies (kill -9): see lifeline.py.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import tempfile
from pathlib import Path

from .lifeline import STATUS_DIR_ENV, STOP_SIGNALS, leave_stop_file

PREEMPTED = 75  # EX_TEMPFAIL: stopped by a signal after saving a checkpoint; `forgather train` resumes
FORGATHER_CODES = (2, 3)  # UserError, TrainingDiverged: a rank's own, meaningful exit statuses


def forward_signals(state: dict, status_dir: Path) -> None:
    """SIGTERM/SIGINT: pass them to our worker processes, and leave word for those not started yet (a signal
    during startup was otherwise lost: the job trained to its end, then exited PREEMPTED)."""
    import psutil

    def forward(signum: int, _frame: object) -> None:
        state["signal"] = signum
        leave_stop_file(status_dir)
        for child in psutil.Process().children(recursive=False):
            try:
                child.send_signal(signum)
            except psutil.Error:
                pass

    for sig in STOP_SIGNALS:
        signal.signal(sig, forward)


def rank_error(status_dir: Path, rank: int) -> str | None:
    """The one-line error rank `rank` wrote before exiting, if it wrote one."""
    try:
        return (status_dir / f"rank-{rank}.txt").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def failure_outcome(failures: dict, status_dir: Path) -> tuple[int, list[str]]:
    """(exit status, lines to print last): the first failing rank's forgather status, and its one-line error
    last, after the other failed ranks' lines that say something else (ranks that hit the same bad input say the
    same thing: it is printed once)."""
    own = {r: f for r, f in failures.items() if f.exitcode in FORGATHER_CODES}
    # A rank killed from outside (kill -9, the OOM killer) is the cause; the others then lose their peer (exit 1)
    # or get torchrun's SIGTERM, whichever torchrun noticed first.
    killed = {r: f for r, f in failures.items() if f.exitcode < 0 and -f.exitcode != signal.SIGTERM}
    pool = own or killed or failures
    rank = min(pool, key=lambda r: (pool[r].timestamp, r))
    code = pool[rank].exitcode
    chosen = rank_error(status_dir, rank) or _unexplained_end(rank, code)
    if code < 0:  # killed by a signal
        code = 128 - code
    said = {_without_rank(chosen)} if chosen else set()
    lines = []
    for other in sorted(failures):
        line = rank_error(status_dir, other)
        if line and _without_rank(line) not in said:
            said.add(_without_rank(line))
            lines.append(line)
    return code or 1, lines + ([chosen] if chosen else [])


def _unexplained_end(rank: int, code: int) -> str:
    """The line for a rank that ended without saying why (a kill, the OOM killer, a crash in native code)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        cause = " (the kernel's out-of-memory killer, or a kill -9)" if -code == signal.SIGKILL else ""
        what = f"was killed by {name}{cause}"
    else:
        what = f"exited with status {code} without an error message"
    return f"forgather: rank {rank} {what}; `forgather train` resumes from the latest checkpoint"


def _forget_unadopted_launch_config(argv: list[str]) -> None:
    """This launch's config file, once every attempt is over: rank 0 made it the run's config.yaml if the run got
    under way; if it is still there the launch was refused or failed first, and nothing will read it again."""
    from .checkpoint.layout import LAUNCH_CONFIG_PREFIX

    if argv and Path(argv[-1]).name.startswith(LAUNCH_CONFIG_PREFIX):
        Path(argv[-1]).unlink(missing_ok=True)


def _without_rank(line: str) -> str:
    return re.sub(r"\[rank \d+\] ", "", line, count=1)


def main(argv: list[str] | None = None) -> int:
    """Run torchrun's agent over argv; returns the job's exit status."""
    argv = sys.argv[1:] if argv is None else argv
    state: dict = {"signal": None}
    status_dir = Path(tempfile.mkdtemp(prefix="forgather-status-"))
    os.environ[STATUS_DIR_ENV] = str(status_dir)
    forward_signals(state, status_dir)
    # `forgather train` blocked them before it exec'd this process: one that came since is delivered now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    # The agent's own failure log lines repeat what the ranks printed; keep its warnings, drop its error report.
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(logging.CRITICAL)
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    parser = get_args_parser()

    def one_line(message: str) -> None:  # what is wrong, not torchrun's 40-line usage
        print(f"forgather: error: torchrun: {message} (`torchrun --help` lists what may follow --)", file=sys.stderr,
              flush=True)
        raise SystemExit(2)

    parser.error = one_line  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    # torchrun's agent would take SIGTERM/SIGINT itself: SignalException, then SIGKILL after a grace period.
    args.signals_to_handle = "SIGHUP,SIGQUIT"
    lines: list[str] | None = None
    try:
        run(args)
        status, lines = 0, []
    except ChildFailedError as exc:
        status, lines = failure_outcome(exc.failures, status_dir)
    finally:
        if lines is None:  # the agent itself failed (a rendezvous, a signal): what the ranks said is still news
            for path in sorted(status_dir.glob("rank-*.txt")):
                if line := rank_error(status_dir, int(path.stem.split("-")[1])):
                    print(line, file=sys.stderr, flush=True)
        # Only ranks that stopped and saved make the job PREEMPTED: a run that reached its end before the request
        # took effect is complete (a requeue would resume nothing); they may have seen a signal this process did not.
        stopped = any(status_dir.glob("rank-*.stopped"))
        for leftover in status_dir.glob("*"):
            leftover.unlink(missing_ok=True)
        status_dir.rmdir()
        _forget_unadopted_launch_config(argv)
    for line in lines:
        print(line, file=sys.stderr, flush=True)
    if status == 0 and stopped:
        name = signal.Signals(state["signal"] or signal.SIGTERM).name
        print(f"forgather: stopped by {name} with the run saved; `forgather train` resumes (exit status {PREEMPTED})",
              file=sys.stderr, flush=True)
        return PREEMPTED
    if status == 0 and state["signal"] is not None:
        print(f"forgather: the run reached its end before {signal.Signals(state['signal']).name} took effect; "
              "nothing is left to resume", file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
