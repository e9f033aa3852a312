"""forgather.agent around torchrun's run(): what the ranks said reaches the user whatever way the agent ends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forgather import agent


def test_a_rank_error_is_printed_when_the_agent_itself_fails(monkeypatch, capsys):
    import torch.distributed.run as torchrun

    seen: dict[str, Path] = {}

    def failing_run(args) -> None:  # a rank wrote its error, then the agent's own rendezvous failed
        seen["dir"] = Path(os.environ[agent.STATUS_DIR_ENV])
        (seen["dir"] / "rank-1.txt").write_text("forgather.run: [rank 1] error: data/x.jsonl has no documents\n")
        raise RuntimeError("rendezvous closed")

    monkeypatch.setattr(torchrun, "run", failing_run)
    monkeypatch.delenv(agent.STATUS_DIR_ENV, raising=False)
    with pytest.raises(RuntimeError, match="rendezvous closed"):
        agent.main(["--nproc-per-node", "1", "-m", "forgather.run", "config.yaml"])
    assert "[rank 1] error: data/x.jsonl has no documents" in capsys.readouterr().err
    assert not seen["dir"].exists()  # read, then removed


def _run_agent_with(monkeypatch, fake_run) -> int:
    import signal

    import torch.distributed.run as torchrun

    monkeypatch.setattr(torchrun, "run", fake_run)
    monkeypatch.delenv(agent.STATUS_DIR_ENV, raising=False)
    pytests_own = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}  # the agent sets its own
    try:
        return agent.main(["--nproc-per-node", "1", "-m", "forgather.run", "config.yaml"])
    finally:
        for sig, handler in pytests_own.items():
            signal.signal(sig, handler)


def test_a_signal_before_the_ranks_exist_reaches_them_when_they_start(monkeypatch):
    import signal

    from forgather.lifeline import stop_requested_early

    seen = {}

    def run_after_a_signal(args) -> None:  # the launcher is signalled, then torchrun starts a rank
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        seen["rank sees it"] = stop_requested_early()
        (Path(os.environ[agent.STATUS_DIR_ENV]) / "rank-0.stopped").write_text("")  # the rank stops and says so

    assert _run_agent_with(monkeypatch, run_after_a_signal) == agent.PREEMPTED
    assert seen["rank sees it"]


def test_a_run_that_ends_before_a_signal_takes_effect_is_complete_not_preempted(monkeypatch, capsys):
    import signal

    def signalled_while_finishing(args) -> None:  # no rank stopped on it: they trained to the end
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)

    assert _run_agent_with(monkeypatch, signalled_while_finishing) == 0
    assert "reached its end before SIGTERM took effect" in capsys.readouterr().err


def test_a_rank_killed_without_a_word_is_named_with_its_signal(tmp_path):
    import signal
    from types import SimpleNamespace

    killed = {1: SimpleNamespace(exitcode=-signal.SIGKILL, timestamp=5.0)}  # kill -9 or the OOM killer: it said nothing
    status, lines = agent.failure_outcome(killed, tmp_path)
    assert status == 137  # the job ended 137 with no line at all
    assert lines == ["forgather: rank 1 was killed by SIGKILL (the kernel's out-of-memory killer, or a kill -9); "
                     "`forgather train` resumes from the latest checkpoint"]


def test_the_rank_killed_from_outside_is_the_cause_not_the_peers_it_took_down(tmp_path):
    import signal
    from types import SimpleNamespace

    from forgather.dist.setup import lost_a_peer

    failures = {0: SimpleNamespace(exitcode=1, timestamp=4.0),  # lost its peer first, as torchrun saw it
                1: SimpleNamespace(exitcode=-signal.SIGKILL, timestamp=5.0)}
    status, lines = agent.failure_outcome(failures, tmp_path)
    assert status == 137 and lines[-1].startswith("forgather: rank 1 was killed by SIGKILL")  # was 1, or 143, at random
    assert lost_a_peer(RuntimeError("[gloo/transport/tcp/pair.cc:537] Read error [::1]:1: Connection reset by peer"))
    assert not lost_a_peer(RuntimeError("CUDA out of memory"))
