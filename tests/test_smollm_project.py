"""The flagship project: every seed flag reaches the resolved config, and its dry run is instant and torch-free."""

from __future__ import annotations

import subprocess
import sys

import yaml

from .conftest import REPO

PROJECT = REPO / "projects" / "smollm_pretrain"

# flag argv → (config key, expected resolved value)
SEED_FLAGS = [
    (["--init-model"], "train.init_model", True),
    (["--model-project", "qwen3"], "model.project", "qwen3"),
    (["--model-config", "30M"], "model.config", "30M"),
    (["--batch-size", "3"], "train.batch_size", 3),
    (["--lr", "0.002"], "train.learning_rate", 0.002),
    (["--max-steps", "17"], "train.max_steps", 17),
    (["--max-length", "1024"], "data.block_size", 1024),
    (["--step-cadence", "0.5"], "train.step_cadence", 0.5),
    (["--save-strategy", "epoch"], "checkpoint.save_strategy", "epoch"),
    (["--attn-implementation", "flex_attention"], "model.attn_implementation", "flex_attention"),
    (["--compile"], "train.compile", True),
    (["--no-restore-dataset-state"], "checkpoint.restore_dataset_state", False),
    (["--verbose-info"], "train.verbose_info", True),
]


def run_cli(*args: str, out_dir) -> subprocess.CompletedProcess:
    # --output-dir keeps the run directory (where train writes config.yaml) out of the repository.
    code = ("import sys; from forgather.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'TORCH_FREE', file=sys.stderr); sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *args, "--output-dir", str(out_dir)], cwd=PROJECT,
                          capture_output=True, text=True, timeout=60)


def lookup(tree: dict, key: str):
    for part in key.split("."):
        tree = tree[part]
    return tree


def test_every_seed_flag_reaches_the_resolved_config_with_its_origin(tmp_path):
    argv = [a for flag, _, _ in SEED_FLAGS for a in flag]
    result = run_cli("config", "show", "--origins", *argv, out_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().endswith("TORCH_FREE")
    lines = result.stdout.splitlines()
    plain = yaml.safe_load(run_cli("config", "show", *argv, out_dir=tmp_path).stdout)
    for flag, key, expected in SEED_FLAGS:
        assert lookup(plain, key) == expected, (key, lookup(plain, key))
        leaf, origin = key.split(".")[-1], {"--lr": "--learning-rate"}.get(flag[0], flag[0])  # an alias is recorded by name
        assert any(l.strip().startswith(f"{leaf}:") and l.rstrip().endswith(f"# flag {origin}") for l in lines), flag
    # --model-project/--model-config select another model project's YAML.
    assert plain["model"]["arch"]["architecture"] == "qwen3" and plain["model"]["arch"]["qk_norm"] is True


def test_dry_run_is_torch_free_and_writes_the_config_it_names(tmp_path):
    # Its wall time (< 1 s) is measured by benchmarks/cli_bench.py, not here.
    result = run_cli("train", "--dry-run", "--nproc-per-node", "2", out_dir=tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().endswith("TORCH_FREE")
    command = result.stdout.strip().splitlines()[-1].split()
    assert command[command.index("--nproc-per-node") + 1] == "2"
    assert command[-1] == str(tmp_path / "run" / "config.yaml")
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["name"] == "smollm_pretrain" and written["data"]["block_size"] == 4096


def test_real_mix_config_resolves_offline_and_data_says_how_to_use_local_files(tmp_path):
    result = run_cli("-c", "smollm_corpus", "config", "show", out_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    paths = [s["path"] for s in config["data"]["sources"]]
    assert paths == ["hf://datasets/HuggingFaceTB/smollm-corpus/cosmopedia-v2/*.parquet",
                     "hf://datasets/HuggingFaceTB/smollm-corpus/fineweb-edu-dedup/*.parquet"]
    assert config["data"]["block_size"] == 4096 and config["train"]["max_tokens"] == 20_000_000_000
    assert config["model"]["arch"]["vocab_size"] == 49152 and config["model"]["arch"]["num_layers"] == 19
    # Without the hub (tests run with HF_HUB_OFFLINE=1) the data commands fail in one line that names the fix.
    result = run_cli("-c", "smollm_corpus", "data", "show", out_dir=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    error = [l for l in result.stderr.splitlines() if l.startswith("forgather: error:")]
    assert len(error) == 1 and "cosmopedia-v2" in error[0] and "point 'path' at them" in error[0]
