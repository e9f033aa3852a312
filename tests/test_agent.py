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
