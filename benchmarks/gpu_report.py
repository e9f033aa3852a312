"""The GPU bench's results as a markdown table with its goals, and the `gpu` section of BENCHMARKS.md."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

GOALS = ("MFU ≥ 50% for (a); (a) ≥ 1.3× HF's tokens/s; document masks cost ≤ 10% over causal; zero graph breaks; "
         "HF and forgather losses within 1% after the steps of (b); backends agree on packed blocks (c)")


def _num(value: Any, fmt: str = ",.0f") -> str:
    return "–" if value is None else format(value, fmt)


def _figures(r: dict[str, Any]) -> str:
    """tokens/s, MFU, memory and graph breaks of a throughput result."""
    if "error" in r or "skipped" in r:
        return r.get("error") or f"skipped: {r['skipped']}"
    parts = [f"{_num(r.get('tokens_per_s'))} tokens/s"]
    if r.get("mfu_pct") is not None:
        parts.append(f"MFU {r['mfu_pct']:.1f}%")
    if r.get("peak_allocated_gib") is not None:
        parts.append(f"peak {r['peak_allocated_gib']:.1f} GiB allocated / {r['peak_reserved_gib']:.1f} reserved")
    if "graph_breaks" in r:
        parts.append(f"{r['graph_breaks']} graph breaks")
    if "split_ms_per_step" in r:
        split = r["split_ms_per_step"]
        parts.append(f"ms/step: data {split['data']}, fwd+bwd {split['forward_backward']}, "
                     f"optimizer {split['optimizer']}")
    return "; ".join(parts)


def goal_lines(results: dict[str, Any]) -> list[str]:
    """Each goal with the measured figure (or why it is missing)."""
    a, b, c = results.get("a", {}), results.get("b", {}), results.get("c", {})
    lines = []
    if "mfu_pct" in a:
        lines.append(f"MFU of (a): {a['mfu_pct']:.1f}% (goal ≥ 50%)")
    hf, causal = b.get("hf", {}).get("tokens_per_s"), b.get("forgather_causal", {}).get("tokens_per_s")
    if a.get("tokens_per_s") and hf:
        lines.append(f"(a) vs HF tokens/s: {a['tokens_per_s'] / hf:.2f}× (goal ≥ 1.3×)")
    if a.get("tokens_per_s") and causal:
        lines.append(f"document-mask cost over causal: {100 * (1 - a['tokens_per_s'] / causal):.1f}% (goal ≤ 10%)")
    if "graph_breaks" in a:
        lines.append(f"graph breaks in the compiled blocks: {a['graph_breaks']} (goal 0)")
    if "loss_relative_difference" in b:
        lines.append(f"HF vs forgather loss after {b['steps']} steps (mean of the last 10): "
                     f"{100 * b['loss_relative_difference']:.2f}% apart (goal ≤ 1%)")
    if "agree" in c:
        lines.append(f"backends agree on packed blocks: {c['agree']} (worst relative difference "
                     f"{max([*c['relative_difference'].values(), c['packed_vs_alone_worst']]):.2e}, "
                     f"tolerance {c['tolerance']:.0e})")
    return lines


def markdown(results: dict[str, Any]) -> str:
    """One table row per section, then the goals."""
    rows = [f"Mode: {results.get('mode')}.", "", "| section | result |", "|---|---|"]
    for key in sorted(k for k in results if isinstance(results[k], dict) and "title" in results[k]):
        r = results[key]
        title = f"{key}: {r['title']}"
        if key == "b" and "hf" in r:
            text = (f"HF: {_figures(r['hf'])}; loss {r['hf']['last10_mean_loss']:.4f}<br>forgather causal: "
                    f"{_figures(r['forgather_causal'])}; loss {r['forgather_causal']['last10_mean_loss']:.4f}")
        elif key == "c" and "agree" in r:
            pairs = ", ".join(f"{k} {v:.1e}" for k, v in r["relative_difference"].items())
            text = (f"relative logit differences: {pairs}; packed vs alone (worst of {r['documents_checked']} "
                    f"documents) {r['packed_vs_alone_worst']:.1e}")
        elif key == "d" and "fsdp2" in r:
            text = f"FSDP2: {_figures(r['fsdp2'])}<br>plain (a): {_figures(r['ddp_one_process_is_section_a'])}"
        elif key == "f" and "batch" in r:
            text = f"batch {r['batch']}: {_figures(r)}" + (
                f"; batch {r['next_batch_out_of_memory']} ran out of memory" if "next_batch_out_of_memory" in r else "")
        elif key == "g" and "error" not in r and "skipped" not in r:
            text = ", ".join(f"{k.removesuffix('_ms')} {v} ms" for k, v in r.items() if k.endswith("_ms"))
        else:
            text = _figures(r)
        rows.append(f"| {title} | {text} ({r.get('seconds', '–')} s) |")
    corpus = results.get("corpus", {})
    rows += ["", f"Data: {corpus.get('blocks')} packed blocks ({corpus.get('documents_per_block', 0):.1f} documents "
                 f"per block) from {corpus.get('documents')} docstring documents, BPE vocab "
                 f"{corpus.get('tokenizer_vocab')}, built in {corpus.get('seconds')} s. {results.get('precision', '')}.",
             "", *[f"- {line}" for line in goal_lines(results)]]
    return "\n".join(rows) + "\n"


def update_report(path: Path, table: str, results: dict[str, Any]) -> None:
    """Replace the `gpu` section of the markdown file at `path` (appended when absent)."""
    from .run import replace_section

    smoke = str(results.get("mode", "")).startswith("smoke")
    header = (f"Command: `python -m benchmarks.gpu{' --smoke' if smoke else ''}` ({results.get('total_seconds')} s) · "
              f"{datetime.date.today().isoformat()} · {results.get('device')}\n\n")
    if smoke:
        header = ("Not run on a GPU yet: these are the CPU smoke mode's figures (tiny shapes, fp32, no flex, no "
                  "compile). They show the code runs and agrees with HF; they say nothing about GPU speed.\n\n" + header)
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    path.write_text(replace_section(text, "gpu", header + table), encoding="utf-8")
