"""Progress lines: step/total, elapsed, ETA, s/step, tokens/s and the last loss read, from step 1 on."""

from __future__ import annotations

import json
import math
import re

from forgather.console import duration
from forgather.train.progress import PROGRESS_EVERY_S, Progress

from .harness import make_trainer, project_config


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_durations_read_as_wall_clock():
    assert [duration(s) for s in (0.4, 42, 185, 7620)] == ["0s", "42s", "3m05s", "2h07m"]
    assert duration(float("inf")) == "?"  # an ETA before any progress


def test_lines_come_early_on_a_doubling_schedule_then_by_time_and_at_the_end():
    clock = FakeClock()
    progress = Progress(start_step=10, total_steps=1000, tokens_per_step=512, clock=clock)
    assert [s for s in range(11, 30) if progress.due(s)] == [11, 12, 14, 18, 26]
    assert not progress.due(27) and progress.due(1000)
    clock.now += PROGRESS_EVERY_S
    assert progress.due(27)


def test_report_gives_rates_over_the_window_and_an_eta_for_the_rest():
    clock = FakeClock()
    progress = Progress(start_step=0, total_steps=100, tokens_per_step=1000, clock=clock)
    clock.now += 8.0  # step 1: the first window holds the slow first step
    assert progress.report(1) == ["step 1/100", "8 s/step", "125 tok/s", "elapsed 8s", "ETA 13m12s"]
    clock.now += 6.0  # steps 2..4 at 2 s each
    assert progress.report(4) == ["step 4/100", "2 s/step", "500 tok/s", "elapsed 14s", "ETA 3m12s"]
    clock.now += 2.0
    assert progress.report(5, tokens=False) == ["step 5/100", "2 s/step", "elapsed 16s", "ETA 3m10s"]


def test_the_trainer_shows_progress_from_step_1_with_the_last_loss_read(tiny_project, capsys):
    config = project_config(tiny_project, max_steps=9, log_every=3, eval_every=0, warmup_steps=0)
    config.checkpoint.save_strategy = "no"
    assert make_trainer(config).fit() == 0
    lines = {int(re.match(r"step (\d+)/9 \| ", line).group(1)): line
             for line in capsys.readouterr().out.splitlines() if line.startswith("step ")}
    assert list(lines) == [1, 2, 3, 4, 6, 8, 9]  # 1, 2, 4, 8 by the schedule; 3, 6, 9 are log steps
    rate = r"\| [\d.e-]+ s/step \| [\d,]+ tok/s \| elapsed \d+s \| ETA \d+s"
    assert re.fullmatch(r"step 1/9 \| loss pending \(first read at step 3\) " + rate, lines[1]), lines[1]
    assert re.fullmatch(r"step 3/9 \| loss \d\.\d{4} \| lr .* \| [\d.e-]+ s/step \| elapsed \d+s \| ETA \d+s", lines[3])
    loss_at_3 = re.search(r"loss (\d\.\d{4})", lines[3]).group(1)
    assert re.fullmatch(rf"step 4/9 \| loss {loss_at_3} \(step 3\) " + rate, lines[4]), lines[4]


def test_log_every_0_still_records_the_final_loss(tiny_project):
    config = project_config(tiny_project, max_steps=3, log_every=0, eval_every=0, warmup_steps=0)
    config.checkpoint.save_strategy = "no"
    assert make_trainer(config).fit() == 0
    records = [json.loads(line) for line in (config.run_dir / "runs" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], math.isfinite(r["loss"])) for r in records if "loss" in r] == [(3, True)]  # none was written
