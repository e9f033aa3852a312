"""Every test file under the paths pytest was given is collected: none hides in a folder pytest skips
by default (`dist`, `build`, ...) or fails to import silently."""

from __future__ import annotations

from pathlib import Path

from .conftest import COLLECTED_FILES


def _requested_roots(config) -> list[Path]:
    roots = []
    for arg in config.args:
        path = Path(arg.split("::")[0])
        if not path.is_absolute():
            here = config.invocation_params.dir / path
            path = here if here.exists() else config.rootpath / path
        roots.append(path.resolve())
    return roots


def test_every_test_file_under_the_requested_paths_is_collected(request):
    expected = set()
    for root in _requested_roots(request.config):
        if root.is_dir():
            expected |= {p.resolve() for p in root.rglob("test_*.py")}
        elif root.name.startswith("test_"):
            expected.add(root)
    missing = sorted(str(p) for p in expected - COLLECTED_FILES)
    assert not missing, f"test files pytest did not collect (renamed folder? import error?): {missing}"
    assert expected, "no test files found under the requested paths"
