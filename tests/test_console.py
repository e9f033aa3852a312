"""Startup phase lines: printed at once, with the seconds since the process started."""

from __future__ import annotations

import re

from forgather.console import phase, since_start


def test_a_phase_line_names_the_time_since_the_process_started(capsys):
    phase("model: building llama")
    phase("not on this rank", enabled=False)
    out = capsys.readouterr().out
    match = re.fullmatch(r"forgather: \[ *(\d+\.\d)s\] model: building llama\n", out)
    assert match and 0 < float(match.group(1)) <= since_start() + 0.1
