"""How a rank's process ends: exit_rank keeps the status and what atexit and the streams still had to do."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_exit_rank_leaves_with_the_status_after_atexit_handlers_and_buffered_output(tmp_path):
    marker = tmp_path / "atexit-ran"
    script = textwrap.dedent(f"""
        import atexit, sys
        from pathlib import Path
        from forgather.lifeline import exit_rank

        atexit.register(lambda: Path({str(marker)!r}).write_text("closed"))
        sys.stdout.write("buffered, never flushed by the script")
        sys.stderr.write("last words")
        exit_rank(3)
        raise SystemExit("exit_rank returned")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    assert marker.read_text() == "closed"
    assert result.stdout == "buffered, never flushed by the script"
    assert result.stderr == "last words"

