"""Launch checks before torchrun: GPUs that exist, one per rank, and a backend that can train on them."""

from __future__ import annotations

import argparse

import pytest

from forgather.config import build_config
from forgather.devices import Gpu
from forgather.launch import add_launch_arguments
from forgather.preflight import launch_problems
from forgather.project import compose_project, find_project, resolve

FOUR = [Gpu(i, f"GPU-{i}", "NVIDIA H200") for i in range(4)]


def problems(project, *argv, gpus=FOUR, environ=None, attention="auto", precision="auto", init_model=False):
    parser = argparse.ArgumentParser()
    add_launch_arguments(parser)
    args = parser.parse_args(list(argv))
    tree, origins = resolve(compose_project(find_project(project)))
    config = build_config(tree, origins)
    config.model.attn_implementation, config.train.precision = attention, precision
    config.train.init_model = init_model
    return launch_problems(config, args, origins, environ or {}, gpus)


def test_gpus_that_exist_and_one_per_rank_pass(tiny_project):
    assert problems(tiny_project, "-d", "2,3") == []
    assert problems(tiny_project, "--nproc-per-node", "4", attention="flex_attention") == []


def test_a_gpu_that_does_not_exist(tiny_project):
    assert problems(tiny_project, "-d", "0,4") == [
        "-d 0,4: GPU 4 does not exist; this machine has 4 GPU(s), numbered 0-3"]


def test_a_start_over_on_elastic_nodes_is_refused(tiny_project):
    # A node joining restarts every worker without counting a restart: each join would start the run over again.
    [problem] = problems(tiny_project, "--nnodes", "1:4", init_model=True)
    assert problem.startswith("--init-model with an elastic --nnodes 1:4") and "--nnodes 4" in problem
    assert problems(tiny_project, "--nnodes", "1:4") == []  # resuming elastically is what elastic jobs are for
    assert problems(tiny_project, "--nnodes", "2:2", init_model=True) == []


def test_gpus_chosen_for_a_cpu_launch_are_refused(tiny_project):
    [problem] = problems(tiny_project, "-d", "0,1", "--no-accelerator")
    assert problem.startswith("-d 0,1 with --no-accelerator: the ranks would run on CPU")


def test_more_ranks_than_gpus(tiny_project):
    [problem] = problems(tiny_project, "--nproc-per-node", "3", environ={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert problem.startswith("--nproc-per-node 3 with 2 visible GPU(s): each rank needs a GPU of its own")
    assert problems(tiny_project, "--nproc-per-node", "3", "--no-accelerator") == []  # CPU processes


@pytest.mark.parametrize("argv, gpus, attention, precision, fragment", [
    ((), [], "flex_attention", "auto", "flex_attention trains only on CUDA GPUs"),
    (("--no-accelerator",), FOUR, "flex_attention", "auto", "flex_attention trains only on CUDA GPUs"),
])
def test_attention_that_cannot_train_on_the_device_it_gets(tiny_project, argv, gpus, attention, precision, fragment):
    [problem] = problems(tiny_project, *argv, gpus=gpus, attention=attention, precision=precision)
    assert fragment in problem and "model.attn_implementation=flex_attention" in problem


def test_a_run_dir_holding_someone_elses_config_yaml_is_refused_untouched(tiny_project, tmp_path):
    from .commands import forgather, one_line_error

    theirs = tmp_path / "experiments"
    theirs.mkdir()
    (theirs / "config.yaml").write_text("foo: 1\nlr: 3\n")  # a run replaced it, exit 0, nothing said
    for dry in ([], ["--dry-run"]):
        line = one_line_error(forgather("train", "--no-accelerator", "--output-dir", str(theirs), *dry,
                                        cwd=tiny_project))
        assert "config.yaml is not the config of a forgather run" in line
    assert (theirs / "config.yaml").read_text() == "foo: 1\nlr: 3\n"


def test_init_from_weights_that_do_not_fit_the_model_are_refused_before_launch(tiny_project, tmp_path):
    import json

    from .commands import forgather, one_line_error

    weights = tmp_path / "pretrained"
    weights.mkdir()
    (weights / "config.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": 300, "hidden_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "intermediate_size": 128, "max_position_embeddings": 64}))
    result = forgather("train", "--no-accelerator", "--set", f"train.init_from={weights}", cwd=tiny_project)
    line = one_line_error(result)
    assert "the weights do not fit model.arch (" in line and "hidden_size: weights 96" in line
    assert "forgather.run" not in result.stdout + result.stderr  # no rank was started to find it out
