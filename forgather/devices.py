"""GPU facts without torch: what NVML sees, how CUDA_VISIBLE_DEVICES maps onto it, which GPU a rank takes.

The CLI uses these before torchrun starts (it must not import torch); the ranks use the same rules, so the
launcher and the ranks never disagree about which GPU is which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import UserError


@dataclass(frozen=True)
class Gpu:
    """One physical GPU as NVML numbers it."""

    index: int
    uuid: str  # "GPU-..." as NVML and CUDA_VISIBLE_DEVICES spell it
    name: str


def nvml_gpus() -> list[Gpu]:
    """Every NVIDIA GPU on this machine, in NVML order; [] when there is no driver, library or GPU."""
    try:
        import pynvml  # nvidia-ml-py: cheap, and a machine without GPUs simply raises

        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            gpus.append(Gpu(index, _text(pynvml.nvmlDeviceGetUUID(handle)), _text(pynvml.nvmlDeviceGetName(handle))))
        return gpus
    except Exception:  # a driver that answers init but not queries: treat as no usable GPU facts
        return []
    finally:
        pynvml.nvmlShutdown()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def visible_entries(text: str | None) -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as a list of entries (indices or UUIDs); None when unset (every GPU visible).

    CUDA stops at the first invalid entry (e.g. -1), so the list does too.
    """
    if text is None:
        return None
    entries = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry or entry.startswith("-"):
            break
        entries.append(entry)
    return entries


def nvml_selector(cuda_index: int, cuda_uuid: str | None, visible_text: str | None) -> tuple[str, Any]:
    """How to find CUDA device `cuda_index` in NVML: ("uuid", "GPU-...") or ("index", n).

    CUDA numbers only the visible GPUs (under -d 2,3, cuda:0 is physical GPU 2) and, unless
    CUDA_DEVICE_ORDER=PCI_BUS_ID, in its own order; the UUID names the same GPU in both, so it is preferred.
    """
    if cuda_uuid:
        return "uuid", cuda_uuid if cuda_uuid.startswith(("GPU-", "MIG-")) else f"GPU-{cuda_uuid}"
    entries = visible_entries(visible_text)
    if entries is None:
        return "index", cuda_index
    entry = entries[cuda_index]
    return ("index", int(entry)) if entry.isdigit() else ("uuid", entry)


def gpu_for_local_rank(local_rank: int, device_count: int, visible_text: str | None) -> int:
    """The CUDA device of a local rank: its own, never one shared with another rank (UserError if none left)."""
    if local_rank >= device_count:
        shown = f" (CUDA_VISIBLE_DEVICES={visible_text})" if visible_text is not None else ""
        raise UserError(f"local rank {local_rank} has no GPU of its own: {device_count} visible{shown} for more "
                        f"processes per node; use --nproc-per-node {device_count} or fewer, more GPUs with -d, "
                        "or --no-accelerator for CPU processes")
    return local_rank


def devices_problem(devices: list[str], gpus: list[Gpu], flag: str) -> str | None:
    """Why `-d` cannot select `devices` on a machine with `gpus`, or None."""
    if not gpus:
        return (f"-d {flag}: no NVIDIA GPU on this machine (NVML finds none); leave out -d to run on CPU, "
                "or check the driver with nvidia-smi")
    missing = [d for d in devices if int(d) >= len(gpus)]
    if missing:
        return (f"-d {flag}: GPU {', '.join(missing)} does not exist; this machine has {len(gpus)} GPU(s), "
                f"numbered 0-{len(gpus) - 1}")
    return None


def visible_gpu_count(environ: dict[str, str], gpus: list[Gpu] | None = None) -> int:
    """GPUs the ranks would see: CUDA_VISIBLE_DEVICES when set, else every GPU NVML finds."""
    entries = visible_entries(environ.get("CUDA_VISIBLE_DEVICES"))
    if entries is not None:
        return len(entries)
    return len(nvml_gpus() if gpus is None else gpus)

