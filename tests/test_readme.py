"""README's commands as written: Quick start's two in one shell; "Train on your own data" on a tiny corpus."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

from .conftest import REPO, WORDS


def section_block(heading: str) -> str:
    """The first fenced bash block under a `## heading` of README.md."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_train_on_your_own_data_commands_run(tmp_path):
    docs = tmp_path / "my_docs"
    docs.mkdir()
    for i in range(3):  # .txt files of several documents each, three blank lines apart
        (docs / f"part{i}.txt").write_text("\n\n\n\n".join(
            " ".join(WORDS[(i * 5 + d + j) % len(WORDS)] for j in range(60)) for d in range(15)))
    (tmp_path / "notes.md").write_text("# Notes\n\n" + " ".join(WORDS))  # one document, as most notes are
    script = f"set -e\nforgather() {{ {shlex.quote(sys.executable)} -m forgather.cli \"$@\"; }}\n"
    script += section_block("Train on your own data")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FORGATHER_DATA_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert (tmp_path / "my_project" / "output" / "config.yaml").is_file()
    assert (tmp_path / "my_project" / "output_txt" / "config.yaml").is_file()


def test_the_data_sources_example_names_what_its_comments_say():
    import yaml

    from forgather.data.spec import named_sources

    text = (REPO / "README.md").read_text(encoding="utf-8").split("\n## Train on your own data\n", 1)[1]
    example = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))
    assert [s["name"] for s in named_sources(example["data"]["sources"])] == ["data", "books", "wiki"]


def test_the_quick_start_commands_run_one_after_the_other_in_one_shell():
    # pip and forgather are stand-ins that check where they run: the second command's `pip install -e ".[dev]"`
    # once ran inside the project directory the first one had cd'ed into, where there is nothing to install.
    script = "\n".join([
        "set -e",
        'pip() { [ -f pyproject.toml ] || { echo "pip ran in $PWD" >&2; return 1; }; }',
        'forgather() { [ -f project.yaml ] || { echo "forgather ran in $PWD" >&2; return 1; }; echo TRAINED; }',
        'python() { [ -f pyproject.toml ] || { echo "pytest ran in $PWD" >&2; return 1; }; echo TESTED; }',
        section_block("Quick start"),
    ])
    result = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["TRAINED", "TESTED"]


def test_every_option_the_readme_gives_forgather_train_exists_in_a_new_project(tmp_path):
    """README's train options are common ones (templates/base.yaml), not one bundled project's own flags."""
    readme = (REPO / "README.md").read_text()
    used = {option for command in re.findall(r"forgather train[^`\n]*", readme)
            for option in re.findall(r"(?<![\w-])--[a-z][a-z-]*", command.split(" -- ")[0])}
    assert {"--model-config", "--attn-implementation", "--compile", "--dry-run"} <= used
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "forgather.cli", "init", "fresh"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    shown = subprocess.run([sys.executable, "-m", "forgather.cli", "train", "--help"], cwd=tmp_path / "fresh",
                           env=env, capture_output=True, text=True, check=True).stdout
    assert sorted(option for option in used if option not in shown) == []
