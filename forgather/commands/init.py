"""`forgather init DIR`: a new project anywhere (project.yaml on the bundled templates, a README of what to edit)."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import UserError
from ..resources import is_model_name, model_project_dir, model_project_names
from .common import data_sources_from_paths, positive_int

if TYPE_CHECKING:
    from ..config import RunConfig

EXAMPLES = """examples:
  forgather init my_run --data ~/notes/*.md          a project on your notes
  forgather init my_run --data corpus/ extra.jsonl   several sources (one per path)
  forgather init my_run                              the Python stdlib's docstrings until you add data
  cd my_run && forgather train --init-model --no-accelerator
"""

STDLIB_SOURCE = "    - {path: stdlib, kind: python_docs}   # Python's own docstrings: replace with your files\n"

PROJECT_YAML = """\
# Created by `forgather init`. Every setting not written here has its default in forgather's base.yaml:
# `forgather config show --origins` prints the whole config and where each value comes from.
extends: base.yaml
name: {name}
description: {description}

model:
  project: {model}             # a bundled model project ({models}) or a directory (./my_model)
  config: {size}                # its size; vocab_size and positions follow data.tokenizer and data.block_size

data:
  # Files, globs or directories of .parquet, .jsonl ({{"text": ...}}), .txt, .md; `name` is optional (from the path).
  # .txt/.md: a line holding only a form feed, or 3+ blank lines in a row, ends a document.
  sources:
{sources}  validation_fraction: 0.05     # hold out the last 5% of each source for eval
  tokenizer:
    # path: tokenizer.json       # an existing tokenizer; without one, a byte-level BPE is trained on the sources
    vocab_size: {vocab_size}
  block_size: {block_size}               # tokens per packed block (--max-length)

train:
  batch_size: 4
  learning_rate: 1.0e-3
  warmup_steps: 10
  max_steps: 200                # --max-steps; or max_tokens for a token budget
  log_every: 10
  eval_every: 50
  eval_batches: 4

checkpoint:
  save_every: 100
"""

README = """\
# {name}

A forgather project created by `forgather init`.

    forgather train --init-model                     # start fresh (add --no-accelerator to stay on the CPU)
    forgather train                                  # resume from the latest checkpoint
    forgather train --init-model --data more/*.txt   # train on other files without editing anything
    forgather data show                              # the sources, their sizes and a decoded block

What to edit in `project.yaml`:

- `data.sources`: your documents. Each entry needs a `path` (a file, a glob or a directory of `.parquet`,
  `.jsonl`, `.txt` or `.md`); `name` is optional (taken from the path). In `.txt`/`.md` files a line holding
  only a form feed, or three or more blank lines in a row, separates documents; otherwise a file is one document.
- `data.tokenizer`: `vocab_size` of the BPE trained on your sources, or `path` to an existing tokenizer.json.
- `data.block_size`: tokens per training sequence.
- `model.config`: the model size (4M, 30M, 124M), or `model.preset` / `model.target_params`.
- `train.max_steps`, `train.batch_size`, `train.learning_rate`: how long and how hard to train.

Runs, checkpoints and logs go to `output/` (`--output-dir` changes it).
"""


def register(subparsers: Any, composed: Any) -> None:
    parser = subparsers.add_parser(
        "init", help="create a new project directory (anywhere) to train on your own data", epilog=EXAMPLES,
        description="Write DIR/project.yaml (on forgather's base.yaml, a bundled model, your --data) and "
                    "DIR/README.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("directory", metavar="DIR", help="the project directory to create (new or empty)")
    parser.add_argument("--data", nargs="+", dest="data_paths", metavar="PATH",
                        help="your files, globs or directories (.parquet, .jsonl, .txt, .md); "
                             "default: Python docstrings")
    parser.add_argument("--model", default="llama", help="a bundled model project or a directory (default: llama)")
    parser.add_argument("--model-config", default="4M", help="the model size inside it (default: 4M)")
    parser.add_argument("--vocab-size", type=_vocab_size, default=8192, metavar="N",
                        help="tokenizer vocabulary, or auto as data.tokenizer.vocab_size takes it (default: 8192)")
    parser.add_argument("--block-size", "--max-length", "--max_length", dest="block_size", type=positive_int,
                        default=512, help="tokens per block (default: 512)")
    parser.add_argument("--force", action="store_true",
                        help="write project.yaml and README.md into an existing non-empty DIR (replacing them)")
    parser.set_defaults(handler=run)


def _vocab_size(text: str) -> int | str:
    """--vocab-size: a positive count, or 'auto' (the largest automatic size), as data.tokenizer.vocab_size."""
    return "auto" if text == "auto" else positive_int(text)


def _relative_to(path: str, directory: Path) -> str:
    """`path` relative to the new project when it lies inside it (the project can then move), else absolute."""
    try:
        return str(Path(path).relative_to(directory))
    except ValueError:
        return path


def _scalar(value: str) -> str:
    """A string as YAML reads it back: plain where that is unambiguous, JSON-quoted otherwise (spaces, '#', 'null')."""
    plain = bool(re.fullmatch(r"[A-Za-z0-9_./~][A-Za-z0-9_./~+-]*", value))
    return value if plain and yaml.safe_load(value) == value else json.dumps(value)


def project_yaml(directory: Path, data_paths: list[str] | None, model: str, size: str, vocab_size: int | str,
                 block_size: int) -> str:
    """The text of a new project's project.yaml."""
    if data_paths:
        entries = data_sources_from_paths(data_paths)
        sources = "".join(f"    - {{path: {_scalar(_relative_to(e['path'], directory))}}}\n" for e in entries)
    else:
        sources = STDLIB_SOURCE
    return PROJECT_YAML.format(name=_scalar(directory.name), description=json.dumps(f"{directory.name}: trained "
                               "with forgather"), model=_scalar(model), models=", ".join(model_project_names()),
                               size=_scalar(size), sources=sources, vocab_size=vocab_size, block_size=block_size)


def check_new_project(directory: Path) -> RunConfig:
    """UserError unless the new project resolves as `config show` would and each local source exists in one known
    format, so a bad option is refused now, not at the first `forgather train`."""
    from ..config import build_config
    from ..preflight import data_source_problems
    from ..project import PROJECT_FILE, Project, compose_project, resolve

    tree, origins = resolve(compose_project(Project(directory, directory / PROJECT_FILE)))
    config = build_config(tree, origins)
    problems = data_source_problems(config)
    if problems:
        raise UserError(problems[0])
    return config


SMALL_DATA_BYTES = 64 << 20  # sources this small are counted, so that the project fits them; larger hold plenty


def fitted_to_small_data(config: RunConfig, text: str) -> str:
    """project.yaml's text with data.shards and validation_fraction lowered to what few documents allow (a single
    note is one document: the defaults of 8 shards and a 5% holdout failed the first `forgather train` on it)."""
    from ..data.sources import count_local_documents
    from ..data.spec import DataSpec

    spec = DataSpec.from_dict(config.data, base_dir=config.project_dir)
    counts = [count_local_documents(source, SMALL_DATA_BYTES) for source in spec.sources]
    if not counts or any(n is None for n in counts):
        return text
    holds_out = spec.validation_fraction > 0 and not spec.validation and any(n >= 2 for n in counts)
    if spec.validation_fraction > 0 and not spec.validation and not holds_out:
        text = text.replace("validation_fraction: 0.05     # hold out the last 5% of each source for eval",
                            "validation_fraction: 0        # no source has the 2 documents a holdout needs")
    train_docs = sum(n - max(1, math.ceil(n * spec.validation_fraction)) if holds_out and n >= 2 else n
                     for n in counts)
    if train_docs < spec.shards:
        text = text.replace("  block_size:", f"  shards: {max(1, train_docs)}                    # one per training "
                            "document at most (8 by default)\n  block_size:", 1)
    return text


def _missing_ancestors(directory: Path) -> list[Path]:
    """The directories mkdir(parents=True) would create for `directory`, innermost first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    return missing


def run(args: argparse.Namespace, composed: Any) -> int:
    directory = Path(args.directory).expanduser().resolve()
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{args.directory} is a file; give a new directory for the project")
    if directory.is_dir() and any(directory.iterdir()) and not args.force:
        raise UserError(f"{args.directory} exists and is not empty; choose a new directory, or pass --force to "
                        "write project.yaml and README.md into it")
    model = args.model
    if not is_model_name(model):  # given relative to here; the project reads it relative to itself
        model = _relative_to(str(model_project_dir(model, Path.cwd(), "--model")), directory)
    else:
        model_project_dir(model, Path.cwd(), "--model")  # an unknown name: one line listing the bundled ones
    text = project_yaml(directory, args.data_paths, model, args.model_config, args.vocab_size, args.block_size)
    created = _missing_ancestors(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "project.yaml", directory / "README.md"]
    previous = {path: path.read_bytes() for path in written if path.is_file()}  # --force over an old project
    try:
        written[0].write_text(text, encoding="utf-8")
        written[1].write_text(README.format(name=directory.name), encoding="utf-8")
        fitted = fitted_to_small_data(check_new_project(directory), text)
        if fitted != text:
            written[0].write_text(fitted, encoding="utf-8")
            check_new_project(directory)
    except Exception as exc:  # put back what was there: a refused init leaves nothing of its own behind
        for path in written:
            path.write_bytes(previous[path]) if path in previous else path.unlink(missing_ok=True)
        for made in created:
            made.rmdir()
        if not isinstance(exc, UserError):
            raise
        # The file a line number would point into is gone again: say what is wrong, not where it was.
        reason = re.sub(r"^\S*project\.yaml:\d+: ", "", str(exc))
        raise UserError(f"the project these options make would not run ({reason}); change the option that sets it "
                        "(--data, --model-config, --vocab-size, --block-size); nothing was written") from None
    where = os.path.relpath(directory) if not os.path.relpath(directory).startswith("..") else str(directory)
    print(f"created {where}/project.yaml and README.md; next: cd {shlex.quote(where)} && forgather train --init-model")
    return 0
