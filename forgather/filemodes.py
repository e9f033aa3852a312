"""Files and directories forgather publishes get the mode a plain open() or mkdir() would give them.

tempfile.mkdtemp makes its directory 0700 and safetensors writes 0600: exported models, initial models, checkpoints
and caches came out readable by their owner alone, which on a shared cluster hides them from the rest of the team.
"""

from __future__ import annotations

import os
from pathlib import Path


def _read_umask() -> int:
    try:  # Linux says it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting; done once, at import, before any thread writes a file
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def as_created(path: Path) -> None:
    """Give `path` the mode open()/mkdir() would have given it under this process's umask."""
    path = Path(path)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_UMASK)
