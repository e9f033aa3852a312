"""A rank whose launcher died stops: a kill -9 of `forgather train` must not leave ranks training and
writing checkpoints into a run dir that nobody watches (and that a new run may take over)."""

from __future__ import annotations

import os
import signal
import threading
import time

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
