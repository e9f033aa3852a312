"""The rank files: written tensor by tensor as valid safetensors, hashed as written, no copy for a sync save."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import load_file

from forgather.checkpoint.tensorstore import stage, write_rank_file
from forgather.errors import CheckpointError

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.int32, torch.uint8, torch.bool]


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {f"t{i}.{str(d).removeprefix('torch.')}": (torch.randn(5, 3, generator=g) * 10).to(d)
           for i, d in enumerate(DTYPES)}
    out["step"] = torch.tensor(7.0)  # 0-dim, as Adam's step
    out["empty"] = torch.zeros(0, 4)
    out["strided"] = torch.arange(12.0).reshape(3, 4).t()  # not contiguous
    return out


def test_a_streamed_rank_file_is_safetensors_that_reads_back_exactly(tmp_path):
    tensors = _tensors()
    host, meta = stage(tensors.items())
    part = write_rank_file(tmp_path, 0, 1, host, meta)
    path = tmp_path / part.file
    assert part.size == path.stat().st_size and part.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    back = load_file(str(path))
    assert back.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor), name


def test_a_save_the_loop_waits_for_keeps_the_live_tensors_and_an_async_one_snapshots_them():
    weight = torch.ones(4, 2)
    live, _ = stage([("w", weight)], copy=False)
    snapshot, _ = stage([("w", weight)])
    weight.add_(1)  # training goes on
    assert live["w"].data_ptr() == weight.data_ptr() and torch.equal(live["w"], weight)
    assert torch.equal(snapshot["w"], torch.ones(4, 2))


def test_a_dtype_safetensors_cannot_hold_is_one_line(tmp_path):
    host, meta = stage([("c", torch.zeros(2, dtype=torch.complex64))])
    with pytest.raises(CheckpointError, match="tensor c: dtype torch.complex64"):
        write_rank_file(tmp_path, 0, 1, host, meta)


def test_async_saves_copy_into_the_previous_saves_host_tensors():
    weight, moment = torch.ones(4, 2), torch.zeros(3)
    buffers: dict[str, torch.Tensor] = {}
    first, _ = stage([("w", weight), ("m", moment)], reuse=buffers)
    assert set(buffers) == {"w", "m"} and all(first[k] is buffers[k] for k in buffers)
    weight.add_(1.0)  # training goes on: the staged copy keeps the values it was staged with
    assert torch.equal(first["w"], torch.ones(4, 2))
    second, _ = stage([("w", weight), ("m", moment)], reuse=buffers)
    assert second["w"].data_ptr() == first["w"].data_ptr() and torch.equal(second["w"], weight)
    assert second["w"] is not weight
    grown = torch.zeros(5, 2)  # a tensor whose shape changed gets a new buffer
    third, _ = stage([("w", grown)], reuse=buffers)
    assert third["w"].shape == (5, 2) and buffers["w"] is third["w"]
