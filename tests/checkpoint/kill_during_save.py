"""Saves step 100, then hangs inside the step-200 save until the test SIGKILLs it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.checkpoint.util import adamw, save, tiny_model, train_steps  # noqa: E402


def slow_writer(state_dict, directory: Path) -> None:
    (directory / "model.safetensors").write_bytes(b"half a file")
    print("WRITING", flush=True)
    time.sleep(120)


if __name__ == "__main__":
    root = Path(sys.argv[1])
    model = tiny_model()
    optimizer = adamw(model)
    train_steps(model, optimizer)
    save(root, 100, model, optimizer)
    train_steps(model, optimizer)
    save(root, 200, model, optimizer, writer=slow_writer)
