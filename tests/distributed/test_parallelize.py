"""torch.compile per block: the blocks compile whole (fullgraph), and graph breaks are counted and reported."""

from __future__ import annotations

import functools

import pytest
import torch

from forgather.dist.parallelize import apply_activation_checkpointing, apply_compile, describe_graph_breaks, graph_breaks
from forgather.models.attention_plan import AttentionPlan, plan_attention
from forgather.models.spec import ModelSpec
from forgather.models.transformer import Transformer

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
DOCS = torch.tensor([[0] * 8 + [1] * 12, [4] * 20])


@pytest.fixture
def dynamo_only(monkeypatch):
    """torch.compile traced by dynamo but run eagerly: graph breaks are found, no C++ is built (CPU CI)."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "activation-checkpointing"])
@pytest.mark.parametrize("impl", ["sdpa", "eager", "flex_attention"])
@pytest.mark.parametrize("arch", ["llama", "qwen3", "deepone"])
def test_blocks_compile_whole_with_document_masks(dynamo_only, arch, impl, checkpointing):
    assert plan_attention(impl, "cpu").compiles_whole and plan_attention("auto", "cuda").compiles_whole
    spec = ModelSpec(architecture=arch, vocab_size=128, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2)
    model = Transformer(spec, impl)
    if checkpointing:
        apply_activation_checkpointing(model)
    apply_compile(model, fullgraph=True)  # a graph break would raise here instead of splitting the block
    x = torch.randint(0, 128, (2, 20))
    if impl == "flex_attention":  # no flex backward on CPU: forward only
        with torch.no_grad():
            model(x, document_ids=DOCS), model(x)
    else:
        (model(x, document_ids=DOCS, labels=x) + model(x, labels=x)).backward()
    assert graph_breaks() == {}


def test_graph_breaks_are_counted_and_described(dynamo_only):
    def broken(x):
        x = x + 1
        torch._dynamo.graph_break()
        return x * 2

    torch.compile(broken, fullgraph=False)(torch.ones(3))
    breaks = graph_breaks()
    assert sum(breaks.values()) == 1
    assert describe_graph_breaks(breaks).startswith("compile: 1 graph break(s); most often (1x):")
    assert describe_graph_breaks({}) == "compile: 0 graph breaks"


def test_flash_attention_is_compiled_without_fullgraph():
    # flash-attn's kernels are external calls that dynamo may not trace; they are not pinned by a CPU test.
    flash = AttentionPlan("flash_attention_2", "cuda", packed="flash_attention_2", causal="flash_attention_2")
    assert not flash.compiles_whole


def test_the_trainer_reports_graph_breaks_after_the_first_step(dynamo_only, tiny_project, capsys):
    from tests.train.harness import make_trainer, project_config

    config = project_config(tiny_project, max_steps=2, log_every=1, eval_every=0)
    config.checkpoint.save_strategy = "no"

    def compiled(model):
        apply_compile(model, fullgraph=True)
        return model

    make_trainer(config, compiled, compiled=True).fit()
    out = capsys.readouterr().out
    assert out.count("compile: 0 graph breaks") == 1, out
    assert '"compile/graph_breaks": 0.0' in (tiny_project / "output" / "runs" / "metrics.jsonl").read_text()
