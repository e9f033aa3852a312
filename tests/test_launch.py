"""Launcher flags → torchrun argv and environment."""

from __future__ import annotations

import argparse

import pytest

from forgather.errors import UserError
from forgather.launch import add_launch_arguments, plan_launch


def _plan(*argv: str, environ: dict | None = None, passthrough=()):
    parser = argparse.ArgumentParser()
    add_launch_arguments(parser)
    args = parser.parse_args(list(argv))
    args.torchrun_args = list(passthrough)
    return plan_launch(args, "/run/config.yaml", environ={} if environ is None else environ)


def _value(argv, flag):
    return argv[argv.index(flag) + 1]


def test_devices_set_cuda_visible_devices_and_default_nproc():
    plan = _plan("-d", "2,3")
    assert plan.env == {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert _value(plan.argv, "--nproc-per-node") == "2" and "--standalone" in plan.argv


def test_nproc_defaults_to_visible_gpus_else_one():
    assert _value(_plan(environ={"CUDA_VISIBLE_DEVICES": "0,1,2"}).argv, "--nproc-per-node") == "3"
    assert _value(_plan(environ={"CUDA_VISIBLE_DEVICES": ""}).argv, "--nproc-per-node") == "1"


def test_no_accelerator_hides_gpus_and_runs_one_process():
    plan = _plan("--no-accelerator", environ={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert plan.env == {"CUDA_VISIBLE_DEVICES": ""} and _value(plan.argv, "--nproc-per-node") == "1"


def test_c10d_rendezvous_for_multi_node():
    argv = _plan("--nnodes", "2", "--nproc-per-node", "8", "--rdzv-endpoint", "10.1.2.3:29400", "--rdzv-id", "j1").argv
    assert _value(argv, "--rdzv-backend") == "c10d" and _value(argv, "--rdzv-endpoint") == "10.1.2.3:29400"
    assert _value(argv, "--rdzv-id") == "j1" and "--standalone" not in argv
    assert _value(_plan("--nnodes", "1:4", "--rdzv-endpoint", "[::1]:29400").argv, "--nnodes") == "1:4"


def test_static_rendezvous_with_master_addr_and_node_rank():
    argv = _plan("--nnodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.5", "--master-port", "1234").argv
    assert _value(argv, "--master-addr") == "10.0.0.5" and _value(argv, "--master-port") == "1234"
    assert _value(argv, "--node-rank") == "1"


def test_passthrough_goes_before_the_entry_module_verbatim():
    argv = _plan(passthrough=["--max-restarts", "2", "--monitor-interval", "1"]).argv
    assert argv[-3:] == ["-m", "forgather.run", "/run/config.yaml"]
    assert argv[-7:-3] == ["--max-restarts", "2", "--monitor-interval", "1"]


@pytest.mark.parametrize("argv, message", [
    (["--nnodes", "2"], "need --rdzv-endpoint"),
    (["--nnodes", "2", "--rdzv-endpoint", "host"], "expected HOST:PORT"),
    (["-d", "0,0"], "distinct GPU indices"),
    (["--nproc-per-node", "0"], "at least 1"),
    (["--nnodes", "2", "--rdzv-endpoint", "10.0.0.1:abc"], "with a port from 1 to 65535"),
    (["--nnodes", "2", "--rdzv-endpoint", "10.0.0.1:70000"], "with a port from 1 to 65535"),
    (["--nnodes", "2", "--node-rank", "2", "--master-addr", "h"], "--node-rank 2: must be from 0 to 1"),
    (["--nnodes", "2", "--node-rank", "-1", "--master-addr", "h"], "--node-rank -1: must be from 0 to 1"),
    (["--nnodes", "two", "--master-addr", "h"], "expected a number of nodes"),
    (["--nnodes", "4:2", "--rdzv-endpoint", "h:1"], "expected a number of nodes"),
    (["--nnodes", "2", "--master-addr", "h", "--master-port", "0"], "--master-port 0: expected a port"),
])
def test_bad_launcher_input_is_a_user_error(argv, message):
    with pytest.raises(UserError, match=message):
        _plan(*argv)


def test_restarts_give_each_attempt_a_fresh_rendezvous_store():
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" not in _plan().env
    for passthrough in (["--max-restarts", "2"], ["--max_restarts=1"]):
        assert _plan(passthrough=passthrough).env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" not in _plan(passthrough=["--max-restarts", "0"]).env
    kept = _plan(passthrough=["--max-restarts", "2"], environ={"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "0"})
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" not in kept.env  # the user's own choice stands
