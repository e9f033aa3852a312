"""`forgather train` really starts torchrun: 2 local ranks, and 2 agents joined as 2 nodes."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import set_in_project

RANK_LINE = re.compile(r"forgather\.run: rank (\d+)/(\d+)")


# Two agents must agree on a port before either starts, so the port cannot come from torchrun; a port found
# free by bind-and-release may be taken before the agent binds it. Pick one at random instead and try another
# when the launcher reports it in use (its preflight check, or the store's own bind failing).
PORT_TAKEN = ("is in use on this machine", "not a torch rendezvous store", "Address already in use", "EADDRINUSE")
LOWEST_TEST_PORT = 10000


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _random_port() -> int:
    """A port below the kernel's ephemeral range. Inside it, the agent that connects before the store listens
    can be handed the store's own port as its local port and connect to itself (TCP simultaneous open on
    loopback); both agents then wait for each other until the timeout. That hung CI once."""
    low, high = _ephemeral_range()
    if low - LOWEST_TEST_PORT < 1000:  # an unusual range leaves no room below it: use the ports above it
        return random.SystemRandom().randrange(high + 1, 65535)
    return random.SystemRandom().randrange(LOWEST_TEST_PORT, low)


def _train(project: Path, *args: str) -> subprocess.Popen:
    # A session of its own: a test that gives up on it can stop the CLI, its agent and ranks together.
    return subprocess.Popen(
        [sys.executable, "-m", "forgather.cli", "train", "--no-accelerator", *args],
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ),
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen) -> str:
    """Kill the process group of a CLI this test started (its agent and ranks too), if still running; its output."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return proc.communicate()[0]


def _wait_for_listener(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    if proc.poll() is not None:
        return  # the agent stopped (a taken port, say): its output tells the caller
    raise AssertionError(f"rendezvous store on port {port} never came up")


def _ranks(output: str) -> set[tuple[int, int]]:
    return {(int(r), int(w)) for r, w in RANK_LINE.findall(output)}


@pytest.fixture
def launch_project(tiny_project: Path) -> Path:
    """The tiny project, set up so the entry point only joins the job (no training steps)."""
    set_in_project(tiny_project, "train", "max_steps: 0")
    set_in_project(tiny_project, "checkpoint", "save_strategy: 'no'")
    return tiny_project


def test_two_local_processes_both_start_on_gloo(launch_project):
    proc = _train(launch_project, "--nproc-per-node", "2")
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    assert _ranks(out) == {(0, 2), (1, 2)}, out
    assert "backend gloo" in out


@pytest.mark.parametrize("rendezvous", ["static", "c10d"])
def test_two_agents_join_as_two_nodes(launch_project, rendezvous):
    for _attempt in range(4):
        agents, outputs = _two_nodes(launch_project, rendezvous, str(_random_port()))
        if not any(marker in out for out in outputs for marker in PORT_TAKEN):
            break
    report = "\n---- next agent ----\n".join(o[-4000:] for o in outputs)  # readable, not a truncated list repr
    assert [a.returncode for a in agents] == [0, 0], report
    assert _ranks("".join(outputs)) == {(0, 2), (1, 2)}, report


def _two_nodes(project: Path, rendezvous: str, port: str) -> tuple[list[subprocess.Popen], list[str]]:
    """Two agents of one job on this host, one per "node"; returns them (finished) and their outputs.

    The store's host starts first and the other agent only once it listens, as on a real cluster: an agent
    whose store never comes up (a taken port) would wait for it until the rendezvous timeout. If either agent
    fails, the other is stopped rather than waited for.
    """
    if rendezvous == "static":
        node_args = [["--master-addr", "127.0.0.1", "--master-port", port, "--node-rank", str(n)] for n in (0, 1)]
    else:
        node_args = [["--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"fg-test-{os.getpid()}-{port}"]] * 2
    agents = [_train(project, "--nnodes", "2", "--nproc-per-node", "1", *node_args[0])]
    outputs: dict[int, str] = {}
    try:
        _wait_for_listener(int(port), agents[0])
        if agents[0].poll() is None:
            agents.append(_train(project, "--nnodes", "2", "--nproc-per-node", "1", *node_args[1]))
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(outputs) < len(agents):
            for i, agent in enumerate(agents):
                if i not in outputs:
                    try:  # reading as it runs: a full pipe would block the agent
                        outputs[i] = agent.communicate(timeout=0.2)[0]
                    except subprocess.TimeoutExpired:
                        pass  # communicate keeps what it read and goes on from there next time
            if any(a.returncode not in (None, 0) for a in agents):
                break  # one failed: the other would only wait for it
    finally:
        for i, agent in enumerate(agents):
            if i not in outputs:
                outputs[i] = _stop(agent)
    return agents, [outputs[i] for i in range(len(agents))]


def test_train_exits_with_torchrun_status_when_ranks_fail(launch_project):
    # The CPU build of torch has no NCCL, so every rank fails to join; the CLI must report failure.
    proc = _train(launch_project, "--nproc-per-node", "1", "--dist-backend", "nccl")
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode != 0, out
