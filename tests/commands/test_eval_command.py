"""`forgather eval`: loss, perplexity and bits per byte of a tiny trained checkpoint, on one rank and two."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from ..checkpoint.test_manifest import flip_byte
from . import forgather, one_line_error
from .test_generate_command import checkpoint_of, trained_run  # noqa: F401  (the shared session fixture)

WINDOW = ("--batch-size", "3", "--max-batches", "4", "--json")


def evaluate(project, *args: str) -> dict:
    result = forgather("eval", *args, cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def one_rank(trained_run) -> dict:
    """`forgather eval` in this process on 4 batches of 3 validation blocks."""
    return evaluate(trained_run, *WINDOW)


def test_eval_of_a_trained_checkpoint_reports_consistent_metrics(trained_run, one_rank):
    one = one_rank
    assert one["model"] == str(checkpoint_of(trained_run)) and one["data"] == "validation"
    assert one["blocks"] == 12 and one["tokens"] > 0 and one["bytes"] > one["tokens"]
    assert 0 < one["loss"] < 10 and math.isfinite(one["loss"])
    assert one["perplexity"] == pytest.approx(math.exp(one["loss"]), rel=1e-12)
    assert one["bits_per_byte"] == pytest.approx(one["loss"] * one["tokens"] / math.log(2) / one["bytes"], rel=1e-12)
    assert one["bits_per_byte"] > 0


def test_two_ranks_under_torchrun_give_the_one_rank_numbers(trained_run, one_rank):
    one = one_rank
    two = evaluate(trained_run, *WINDOW, "--nproc-per-node", "2", "--no-accelerator")
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert (two["tokens"], two["bytes"], two["blocks"]) == (one["tokens"], one["bytes"], one["blocks"])
    assert abs(two["loss"] - one["loss"]) <= 1e-6 and abs(two["bits_per_byte"] - one["bits_per_byte"]) <= 1e-6


def test_a_data_file_counts_the_bytes_of_every_predicted_token(trained_run, tmp_path):
    from tokenizers import Tokenizer

    text = "the quick brown fox jumps over a lazy dog near old towns"
    (tmp_path / "held_out.txt").write_text(text, encoding="utf-8")
    model = trained_run / "output" / "initial_model"
    got = evaluate(trained_run, str(model), "--split", "test", "--data", str(tmp_path / "held_out.txt"), "--json")
    ids = Tokenizer.from_file(str(model / "tokenizer.json")).encode(text, add_special_tokens=False)
    # One document, one block: every token but the first is predicted, then the EOS the run appends.
    assert got["blocks"] == 1 and got["tokens"] == len(ids.ids)
    assert got["bytes"] == len(text.encode()) - len(ids.tokens[0])
    assert got["data"] == str(tmp_path / "held_out.txt")


@pytest.mark.parametrize("args, message", [
    (("--split", "test"), "--split test needs --data FILE"),
    (("--data", "missing.jsonl"), "missing.jsonl: no such file or directory"),
    (("--max-batches", "0"), "--max-batches: 0 must be at least 1"),
    (("nowhere",), "nowhere: no such file or directory"),
])
def test_bad_input_is_a_one_line_error(trained_run, args, message):
    assert message in one_line_error(forgather("eval", *args, cwd=trained_run))


def test_a_corrupted_checkpoint_or_a_model_without_data_is_a_one_line_error(trained_run, tmp_path):
    copy = tmp_path / "step-000002"
    shutil.copytree(checkpoint_of(trained_run), copy)
    flip_byte(copy / "model.safetensors")
    assert "sha256 mismatch" in one_line_error(forgather("eval", str(copy), cwd=tmp_path))
    bare = tmp_path / "bare_model"
    shutil.copytree(trained_run / "output" / "initial_model", bare)  # no run config beside it
    assert "pass --data FILE" in one_line_error(forgather("eval", str(bare), cwd=tmp_path))


def test_a_bare_model_dir_evaluates_like_its_run_given_the_same_block_size(trained_run, tmp_path):
    docs = [{"text": f"the quick brown fox {i} jumps over a lazy dog near old towns and rivers"} for i in range(6)]
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    bare = tmp_path / "bare_model"
    shutil.copytree(trained_run / "output" / "initial_model", bare)  # no run config: only its config.json
    result = forgather("eval", str(bare), "--data", str(held_out), "--block-size", "64", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "blocks of 64 tokens, EOS <|endoftext|> after each document (--block-size, EOS from config.json)" \
        in result.stderr
    as_bare = json.loads(result.stdout)
    as_run = evaluate(trained_run, str(trained_run / "output" / "initial_model"), "--data", str(held_out), "--json")
    # the run appends EOS to each document (data.tokenizer.add_eos); the bare dir now does too, from config.json
    for key in ("blocks", "tokens", "bytes", "loss"):
        assert as_bare[key] == pytest.approx(as_run[key], rel=1e-6), key  # batch sizes differ: summation order


def test_data_row_slice_evaluates_only_those_rows(trained_run, tmp_path):
    docs = [{"text": f"document {i}: " + "the quick brown fox jumps over a lazy dog " * (1 + i % 3)} for i in range(10)]
    whole = tmp_path / "docs.jsonl"
    whole.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    tail = tmp_path / "tail.jsonl"
    tail.write_text("".join(json.dumps(d) + "\n" for d in docs[6:]), encoding="utf-8")
    model = str(trained_run / "output" / "initial_model")
    sliced = evaluate(trained_run, model, "--data", f"{whole}[6:]", "--json")
    expected = evaluate(trained_run, model, "--data", str(tail), "--json")
    assert sliced["data"] == f"{whole}[6:]"
    assert (sliced["tokens"], sliced["bytes"]) == (expected["tokens"], expected["bytes"])
    assert sliced["loss"] == pytest.approx(expected["loss"], rel=1e-9)


def test_the_runs_own_export_evaluates_like_its_checkpoint(trained_run, one_rank):
    export = trained_run / "output" / "exports" / "step-000002"  # refused: "manifest.json: missing", by its name
    from_export = evaluate(trained_run, str(export), *WINDOW)
    assert from_export["model"] == str(export) and from_export["data"] == "validation"  # the run's settings
    assert from_export["tokens"] == one_rank["tokens"] and abs(from_export["loss"] - one_rank["loss"]) <= 1e-5
