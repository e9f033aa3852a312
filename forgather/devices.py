"""GPU facts without torch: what NVML sees, how CUDA_VISIBLE_DEVICES maps onto it, which GPU a rank takes,
and the dense bf16 peak of a GPU model (for MFU).

The CLI uses these before torchrun starts (it must not import torch); the ranks use the same rules, so the
launcher and the ranks never disagree about which GPU is which.
"""

from __future__ import annotations

import re
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


# Dense bf16 tensor-core peak per device (no sparsity), from the vendors' datasheets. Each key is the whole
# words of the device name that identify it ("NVIDIA H100 80GB HBM3" is an H100 SXM); a variant comes
# before its base model, and "L4" never matches "L40" (whole words, not substrings).
PEAK_BF16_FLOPS: list[tuple[tuple[str, ...], float]] = [
    (("H100", "PCIe"), 756e12),
    (("H100", "NVL"), 835e12),
    (("H100",), 989e12),
    (("H200", "NVL"), 835e12),
    (("H200",), 989e12),
    (("GH200",), 989e12),
    (("H800",), 989e12),
    (("A100",), 312e12),
    (("A800",), 312e12),
    (("L40S",), 362e12),
    (("L40",), 181e12),
    (("L4",), 121e12),
    (("A10G",), 125e12),
    (("A10",), 125e12),
    (("RTX", "4090"), 165e12),
    (("RTX", "3090"), 71e12),
    (("B200",), 2250e12),
]


def peak_flops_for_name(name: str) -> float | None:
    """Dense bf16 peak FLOP/s for a GPU name as CUDA reports it, or None when the model is not in the table."""
    words = {w.upper() for w in re.findall(r"[A-Za-z0-9]+", name)}
    for key, flops in PEAK_BF16_FLOPS:
        if all(part.upper() in words for part in key):
            return flops
    return None
