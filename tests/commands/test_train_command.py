"""`forgather train` refuses data layouts the ranks could not read, in one line, before torchrun starts."""

from __future__ import annotations

import json
import os
import socket
import time

from . import forgather, one_line_error


def test_a_world_size_that_cannot_split_the_shards_is_refused_before_torchrun(tiny_project):
    result = forgather("train", "--nproc-per-node", "3", "--no-accelerator", "--dry-run", cwd=tiny_project,
                       probe_torch=True)
    assert result.stderr.strip().endswith("TORCH_FREE")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and lines[-2].startswith("forgather: error: data.shards is 8, which 3 ranks")
    assert "use 1, 2, 4, 8 ranks, or set data.shards to a multiple of 3 (e.g. 24)" in lines[-2]
    assert not (tiny_project / "output" / "config.yaml").exists()
    ok = forgather("train", "--nproc-per-node", "3", "--dist-mode", "dispatch", "--no-accelerator", "--dry-run",
                   cwd=tiny_project)
    assert ok.returncode == 0, ok.stderr  # dispatch: rank 0 alone reads the data


def test_resuming_with_another_shard_count_is_refused_before_torchrun(tiny_project):
    step = tiny_project / "output" / "checkpoints" / "step-000004"
    step.mkdir(parents=True)
    (step / "data_state.json").write_text(json.dumps({"format": 2, "shards": 4, "position": 8, "cursors": {}}))
    line = one_line_error(forgather("train", "--no-accelerator", cwd=tiny_project))
    assert "data.shards is 8 but" in line and "was saved with 4 shards" in line
    assert "--no-restore-dataset-state" in line
    assert forgather("train", "--no-accelerator", "--dry-run", "--no-restore-dataset-state",
                     cwd=tiny_project).returncode == 0


def test_a_read_only_output_dir_is_one_line(tiny_project):
    (tiny_project / "output").mkdir()
    (tiny_project / "output").chmod(0o500)
    try:
        if os.access(tiny_project / "output", os.W_OK):
            return  # root ignores permissions: nothing to show as this user (CI runs unprivileged checks too)
        line = one_line_error(forgather("train", "--no-accelerator", cwd=tiny_project))
        assert "output_dir" in line and "is not writable" in line
    finally:
        (tiny_project / "output").chmod(0o700)


def test_a_master_port_in_use_is_one_line(tiny_project):
    with socket.socket() as held:  # held open for the whole test: never released and reused
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        line = one_line_error(forgather("train", "--no-accelerator", "--master-addr", "127.0.0.1", "--master-port",
                                        str(port), cwd=tiny_project))
    assert f"--master-port {port} is in use on this machine" in line


def test_a_rendezvous_endpoint_served_by_another_program_is_one_line_not_a_hang(tiny_project):
    with socket.socket() as other:  # a program that accepts connections and never speaks the store protocol
        other.bind(("127.0.0.1", 0))
        other.listen()
        endpoint = f"127.0.0.1:{other.getsockname()[1]}"
        started = time.monotonic()
        line = one_line_error(forgather("train", "--no-accelerator", "--nnodes", "2", "--rdzv-endpoint", endpoint,
                                        cwd=tiny_project))
    assert "another program listens on that port and it is not a torch rendezvous store" in line
    assert time.monotonic() - started < 60


def test_a_bad_torchrun_argument_after_dashes_is_one_line(tiny_project):
    result = forgather("train", "--no-accelerator", "--", "--bogus", cwd=tiny_project)
    assert result.returncode == 2
    line = one_line_error(result)
    assert "torchrun: unrecognized arguments: --bogus" in line and "usage:" not in result.stderr


def test_a_missing_data_path_is_refused_before_torchrun_and_warned_by_a_dry_run(tiny_project):
    missing = str(tiny_project / "gone" / "rows.jsonl")
    sources = f"data.sources=[{{path: {missing}}}]"  # as a project file may name it (--data checks its own)
    result = forgather("train", "--init-model", "--no-accelerator", "--set", sources, cwd=tiny_project)
    assert result.returncode == 2 and "forgather.run" not in result.stdout + result.stderr  # no rank started
    assert f"file not found: {missing}" in one_line_error(result)
    dry = forgather("train", "--dry-run", "--set", sources, cwd=tiny_project)
    assert dry.returncode == 0 and f"# warning: source 'rows': file not found: {missing}" in dry.stdout


def test_a_launch_that_returns_in_process_gives_the_caller_its_signal_handlers_back(tiny_project, monkeypatch):
    import signal
    import threading

    import pytest

    from forgather.cli import run as run_cli
    from forgather.commands import train as train_command
    from forgather.errors import UserError
    from forgather.lifeline import STOP_SIGNALS

    def exec_that_fails_after_a_stop(plan):  # a SIGTERM after the block stays pending; then no exec happens
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        return 1

    monkeypatch.setattr(train_command, "execute", exec_that_fails_after_a_stop)
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    try:
        assert run_cli(["train", "-p", str(tiny_project), "--init-model"]) == 1  # and the pending SIGTERM did
        # not kill this process once unblocked
        assert {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} == handlers  # Ctrl-C was swallowed after it
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask  # SIGTERM/SIGINT stayed blocked
        with pytest.raises(UserError, match="no such file"):
            run_cli(["train", "-p", str(tiny_project), "--data", str(tiny_project / "missing.txt")])
        assert {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} == handlers
    finally:  # on the old code: leave this test process as it was
        while signal.sigtimedwait(STOP_SIGNALS, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
