"""How a rank's process ends. A rank whose launcher died stops: a kill -9 of `forgather train` must not leave
ranks training and writing checkpoints into a run dir that nobody watches (and that a new run may take over).
A rank that finished leaves with its own exit status, not one its teardown invented."""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from typing import NoReturn

POLL_SECONDS = 1.0
GRACE_SECONDS = 120.0  # to save a checkpoint and leave; then the rank exits hard (a peer may be gone too)


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
