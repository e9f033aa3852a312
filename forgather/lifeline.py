"""How a rank's process ends. A rank whose launcher died stops: a kill -9 of `forgather train` must not leave
ranks training and writing checkpoints into a run dir that nobody watches (and that a new run may take over).
A stop request (SIGTERM/SIGINT) is kept from the rank's first moment, also one the launcher took before the rank
existed. A rank that finished leaves with its own exit status, not one its teardown invented."""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn

POLL_SECONDS = 1.0
GRACE_SECONDS = 120.0  # to save a checkpoint and leave; then the rank exits hard (a peer may be gone too)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)  # a stop request: save and leave (preemption, Ctrl-C, a time limit)
STATUS_DIR_ENV = "FORGATHER_STATUS_DIR"  # the launcher's scratch dir that ranks report into (agent.py)
STOP_FILE = "stop"  # in it: the launcher was asked to stop, maybe before this rank existed to be told
_early_requests: list[int] = []


def record_stop_signals(received: list[int]) -> list[int]:
    """Make each SIGTERM/SIGINT a note appended to `received` (returned), for a process to act on at a safe point."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, _frame: received.append(signum))
    return received


def hold_stop_requests() -> None:
    """Keep a SIGTERM/SIGINT that reaches this rank before its trainer takes signals over: the default action
    killed a rank still starting (exit 143, nothing said), so a preemption during startup was not a clean stop."""
    record_stop_signals(_early_requests)


def stop_requested_early() -> bool:
    """Whether this job was asked to stop before its training loop started: a signal held by
    hold_stop_requests, or one the launcher received before this rank was there to be forwarded it."""
    status_dir = os.environ.get(STATUS_DIR_ENV)
    return bool(_early_requests) or bool(status_dir and (Path(status_dir) / STOP_FILE).exists())


def leave_stop_file(status_dir: Path) -> None:
    """The launcher's half of stop_requested_early: ranks that start after a signal see it."""
    try:
        (status_dir / STOP_FILE).touch()
    except OSError:
        pass  # the signals already forwarded still stop the ranks that exist


def watch_parent(poll: float = POLL_SECONDS, grace: float = GRACE_SECONDS) -> threading.Thread:
    """Watch this process's parent (torchrun's agent); when it is gone, stop like on SIGTERM (a checkpoint is
    saved at the next step), and exit hard if that has not ended the process within `grace` seconds."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)
        os._exit(128 + signal.SIGTERM)

    thread = threading.Thread(target=watch, name="forgather-lifeline", daemon=True)
    thread.start()
    return thread


def exit_rank(status: int) -> NoReturn:
    """End a torchrun rank's process with `status` once its work is done, skipping the interpreter's teardown.

    Gloo's worker threads drop their last finished collective (and the Python-owned tensors it holds) on their own
    time. When that lands after the interpreter began finalizing, the thread cannot take the GIL and aborts the
    process: "terminate called without an active exception", exit -6, after a run that finished and returned 0
    (seen under CPU load, even after a final barrier and destroy_process_group; pytorch/pytorch#179291).
    atexit handlers still run (log handlers, writers); only module teardown, which the process has no use for, is
    skipped.
    """
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass  # a closed or broken pipe has nothing left to say
        os._exit(status)
