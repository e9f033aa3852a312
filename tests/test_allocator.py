"""keep_freed_memory: big tensors freed in one step are reused in the next, not page-faulted in again."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import resource, sys, torch
torch.set_num_threads(1)
if sys.argv[1] == "tuned":
    from forgather.allocator import keep_freed_memory
    assert keep_freed_memory()

def step():  # activations, logits chunk and a gradient buffer of one CPU training step, allocated and freed
    for mib in (22, 64, 200):
        torch.empty(mib * 2**20 // 4).fill_(1.0)

for _ in range(3):  # warm up: the first steps fault their memory in either way
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    default, tuned = faults("default"), faults("tuned")
    pages = 5 * (22 + 64 + 200) * 2**20 // 4096
    assert default > pages // 2, default  # glibc's default unmaps big blocks on free and faults them in again
    assert tuned < pages // 10, tuned  # kept in the heap and reused
