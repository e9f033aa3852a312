"""Cache: reused when inputs match, rebuilt when any input changes, clear DataError when asked to use a stale one."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from forgather.data.loader import open_data
from forgather.errors import DataError

from .conftest import CORPUS, small_spec


def _spec_on_copy(tmp_path, **kw):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    shutil.copy(CORPUS / "quotes.parquet", src / "quotes.parquet")
    spec = small_spec(tmp_path / "cache", **kw)
    spec.sources = [spec.sources[0]]
    spec.sources[0].path = str(src / "quotes.parquet")
    spec.sources[0].max_samples = 200
    return spec, src / "quotes.parquet"


def test_reused_when_nothing_changed(shared_data, tmp_path):
    spec, _ = _spec_on_copy(tmp_path)
    first = open_data(spec).train.epoch(0)
    calls = []
    again = open_data(spec, progress=lambda a, b: calls.append(a)).train.epoch(0)
    assert again.path == first.path and again.manifest["created"] == first.manifest["created"]
    assert calls == []  # nothing was tokenized
    assert not [p for p in first.path.parent.iterdir() if ".tmp-" in p.name]  # atomic: no leftovers


def test_fingerprint_change_rebuilds(shared_data, tmp_path):
    spec, f = _spec_on_copy(tmp_path)
    base = open_data(spec).train
    ep = base.epoch(0)
    # a rewritten source file (new mtime) → new fingerprint → rebuilt elsewhere, never reused
    st = os.stat(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = open_data(spec).train
    assert changed.fingerprint != base.fingerprint and changed.epoch(0).path != ep.path
    for k, v in {"seed": 8, "block_size": 64, "pack_window": 4}.items():
        other, _ = _spec_on_copy(tmp_path, **{k: v})
        assert open_data(other).train.fingerprint != changed.fingerprint, k
    bos, _ = _spec_on_copy(tmp_path)
    bos.tokenizer.add_bos = True
    bos.tokenizer.bos_token = "<|im_start|>"
    assert open_data(bos).train.fingerprint != changed.fingerprint


def test_manifest_mismatch_rebuilds_or_errors(shared_data, tmp_path):
    spec, _ = _spec_on_copy(tmp_path)
    ep = open_data(spec).train.epoch(0)
    m = json.loads((ep.path / "manifest.json").read_text())
    m["fingerprint"] = "0" * 64
    (ep.path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DataError, match="different sources/tokenizer/settings"):
        open_data(spec, rebuild=False).train.epoch(0)
    rebuilt = open_data(spec).train.epoch(0)
    assert rebuilt.manifest["fingerprint"] != "0" * 64
    np.testing.assert_array_equal(rebuilt.block(3)[0], ep.block(3)[0])


def test_cache_from_different_settings_is_a_clear_error(shared_data, tmp_path):
    spec, _ = _spec_on_copy(tmp_path, block_size=64)
    open_data(spec).train.epoch(0)
    other, _ = _spec_on_copy(tmp_path, block_size=128)
    with pytest.raises(DataError) as e:
        open_data(other, rebuild=False).train.epoch(0)
    assert "forgather data prepare" in str(e.value) and "block_size=64" in str(e.value)
