"""--verbose-info: parameter counts of the built model, and the precision and attention backends actually used."""

from __future__ import annotations

import torch

from forgather.dist.setup import DistInfo
from forgather.models.spec import ModelSpec, parameter_counts
from forgather.models.transformer import build_model
from forgather.train.assemble import data_spec, print_run_description
from forgather.train.describe import built_parameter_counts
from forgather.train.precision import plan_precision

from .harness import project_config


def _info(device: str) -> DistInfo:
    return DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device(device), backend="gloo")


def test_verbose_info_names_counts_precision_and_attention_as_resolved(tiny_project, capsys):
    config = project_config(tiny_project)
    spec = ModelSpec.from_dict(config.model.arch)
    model = build_model(spec, "sdpa", device="cpu")
    total = sum(p.numel() for p in model.parameters())
    vocabulary = model.embed_tokens.weight.numel() + model.lm_head.weight.numel()  # untied here
    # auto resolves per device: the lines name what runs, not the setting.
    for device, attention, precision in (("cpu", "auto → sdpa for packed rows, sdpa for one-document rows",
                                          "precision auto → fp32 compute, fp32 master weights, fp32 reductions"),
                                         ("cuda", "auto → flex_attention for packed rows, sdpa for one-document rows",
                                          "precision auto → bf16 compute, fp32 master weights, fp32 reductions, "
                                          "TF32 matmuls")):
        print_run_description(config, spec, _info(device), None, data_spec(config, 2), model,
                              plan_precision("auto", device))
        out = capsys.readouterr().out
        assert f"attention {attention}" in out and precision in out, out
        assert f"parameters {total:,} total" in out and f"{total - vocabulary:,} non-embedding" in out, out


def test_built_counts_agree_with_the_spec_and_count_a_tied_matrix_once(tiny_project):
    spec = ModelSpec.from_dict(project_config(tiny_project).model.arch)
    assert not spec.tie_embeddings
    assert built_parameter_counts(build_model(spec, "sdpa", device="cpu")) == parameter_counts(spec)
    tied = ModelSpec.from_dict({**spec.to_dict(), "tie_embeddings": True})
    model = build_model(tied, "sdpa", device="cpu")
    total = sum(p.numel() for p in model.parameters())
    non_embedding = total - model.embed_tokens.weight.numel()
    assert built_parameter_counts(model) == parameter_counts(tied) == (total, non_embedding)
